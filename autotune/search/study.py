"""The Optuna study: naming, storage, suggesting backend parameters, and trial records.

Each trial's full record (backend, parameters, measurement, artifact, prediction, quality,
constraint violations, reason) is stored as JSON in the trial's user attributes the moment the
trial ends, so an interrupted run loses nothing and a rerun reuses every finished trial.
"""

from __future__ import annotations

import os
import random
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from autotune.budget import Budget
from autotune.decide.judgment import judged as judged_against
from autotune.plugins.backend import Backend, Categorical, IntRange, Params, SearchSpace
from autotune.record import TrialRecord, config_key
from autotune.store.cache import key_digest
from autotune.store.measurements import STALE_AFTER_S
from autotune.store.storage import create_engine, default_storage, is_sqlite, schema_lock, storage_errors

RECORD_ATTR = "autotune_record"
OBJECTIVE_NAMES = ("quality_loss", "itl_p95_ms", "peak_rss_bytes")
"""All minimised. quality_loss is the mean KL divergence from the reference when measured."""
METRIC_NAMES = ("quality loss (mean KL, or 16 - bits/weight)", "p95 ms/token", "peak memory bytes")
"""How optuna-dashboard labels the objectives."""
DASHBOARD_CONSTRAINTS = "constraints"
"""optuna-dashboard (0.21) reads a trial's constraints only from this system attribute, as a list; optuna 5 writes one
``constraints:<name>`` attribute per constraint instead. Both are written (the same values, in ``judgment.violations``
order), so the dashboard tells trials over budget apart; optuna then lists each constraint twice, under its name
and its position, which changes no feasibility and no ranking of violations."""


def study_name(model_name: str, fingerprint: str, budget: Budget, objective: str, backends: Sequence[str],
               identity: dict[str, Any]) -> str:
    """A readable, deterministic name: same model, machine, workload, budget, objective and backends → same study.

    Readable in optuna-dashboard (``SmolLM2-135M · 2.0 GiB p95 50 ms · latency · llamacpp+onnxruntime``); the
    digest at the end tells apart what the words leave out (workload, quality settings, the model's hash).
    """
    limits = " ".join([f"{budget.memory_bytes / 2**30:.1f} GiB", *budget.terms()])
    digest = key_digest({"budget": budget.model_dump(), "objective": objective, "backends": sorted(backends),
                         "fingerprint": fingerprint, **identity}, 10)
    return f"{model_name} · {limits} · {objective} · {'+'.join(sorted(backends))} · {fingerprint[:8]}-{digest}"


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    """The study storage at ``url`` (default: SQLite in the cache); any failure is one ``StorageError`` line."""
    url = url or default_storage()
    with storage_errors(url):
        engine = create_engine(url)
        try:
            with schema_lock(engine):  # N workers on an empty PostgreSQL database: one creates the tables
                kwargs = {"connect_args": {"timeout": 60}} if is_sqlite(url) else {"pool_pre_ping": True}
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        finally:
            engine.dispose()


def open_study(name: str, storage: str | None, seed: int | None) -> optuna.Study:
    """Create or load the study (multi-objective, constrained TPE)."""
    rdb = open_storage(storage)
    # Constraints reach the sampler through trial.set_constraint (see Tuner._tell).
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    study = optuna.create_study(study_name=name, storage=rdb, sampler=sampler, load_if_exists=True,
                                directions=["minimize"] * len(OBJECTIVE_NAMES))
    if study.metric_names != list(METRIC_NAMES):
        with warnings.catch_warnings():  # "experimental" since optuna 3.2; the dashboard reads it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRIC_NAMES))
    return study


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (one per study and trial) off inside the block; the caller's level back after it."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def suggest_params(trial: optuna.Trial, backend: Backend, space: SearchSpace) -> Params:
    """Ask Optuna for a value of each dimension, namespaced by backend (``llamacpp.n_threads``)."""
    params: Params = {}
    for name, dimension in space.items():
        key = f"{backend.name}.{name}"
        if isinstance(dimension, Categorical):
            params[name] = trial.suggest_categorical(key, list(dimension.choices))
        elif isinstance(dimension, IntRange):
            params[name] = trial.suggest_int(key, dimension.low, dimension.high, step=dimension.step, log=dimension.log)
        else:  # pragma: no cover - the Dimension union is closed
            raise TypeError(f"unknown search dimension {dimension!r}")
    return params


def distributions(backends: Sequence[str], spaces: dict[str, SearchSpace]) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every parameter ``suggest_params`` asks for, by its namespaced key."""
    found: dict[str, BaseDistribution] = {"backend": CategoricalDistribution(list(backends))}
    for backend in backends:
        for name, dimension in spaces[backend].items():
            found[f"{backend}.{name}"] = (
                CategoricalDistribution(list(dimension.choices)) if isinstance(dimension, Categorical) else
                IntDistribution(dimension.low, dimension.high, step=dimension.step, log=dimension.log))
    return found


def add_record(study: optuna.Study, record: TrialRecord, spaces: dict[str, SearchSpace], budget: Budget,
               backends: Sequence[str], origin: str) -> bool:
    """Add a stored record to ``study`` as a finished trial (judged against ``budget``); False when it lies outside
    this study's search space (it still counts as known: the caller never measures it again)."""
    every = distributions(backends, spaces)
    params: dict[str, Any] = {"backend": record.backend,
                              **{f"{record.backend}.{k}": v for k, v in record.params.items()}}
    used = {key: every.get(key) for key in params}
    for key, distribution in used.items():
        if distribution is None or not _within(distribution, params[key]):
            return False
    # Numbered as this study numbers it, so a progress line and the final table name it alike.
    record.number = add_trial(study, finished_trial(judged_against(record, budget), params,
                                                    {k: d for k, d in used.items() if d is not None},
                                                    {"from_store": origin}))
    return True


def add_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """``study.add_trial``, returning the number the study gave the trial (another worker may add one meanwhile)."""
    trial._validate()
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=trial)
    return study._storage.get_trial_number_from_id(trial_id)


def finished_trial(record: TrialRecord, params: dict[str, Any], distributions: dict[str, BaseDistribution],
                   extra: dict[str, Any] | None = None) -> optuna.trial.FrozenTrial:
    """A finished trial holding ``record`` (judged already) as ``tell`` would leave it, for ``study.add_trial``."""
    measured = record.status == "measured"
    state = TrialState.COMPLETE if measured else TrialState.FAIL if record.status == "failed" else TrialState.PRUNED
    return optuna.trial.create_trial(
        state=state, values=list(record.objectives()) if measured else None, params=params,
        distributions=distributions, user_attrs={**record_attrs(record), **(extra or {})},
        system_attrs={DASHBOARD_CONSTRAINTS: list(record.violations.values())} if measured else None,
        constraints=dict(record.violations) if measured else None)


def _within(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def enqueue(study: optuna.Study, backend: str, params: Params) -> None:
    """Queue a configuration to be measured first, unless the study has it queued, running or with a result.

    Not Optuna's ``skip_if_exists``: that also matches a trial that was interrupted (kill -9, Ctrl-C, SIGTERM,
    a dead fleet worker) and so has no result, and the configuration in flight would never be measured again.
    """
    flat = {"backend": backend, **{f"{backend}.{k}": v for k, v in params.items()}}
    for trial in study.get_trials(deepcopy=False):
        if trial.system_attrs.get("fixed_params", trial.params) == flat and not interrupted(trial):
            return
    study.enqueue_trial(flat)


def interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` ended without a result of its own: it was interrupted, or skipped as a repeat of another
    (a configuration then known is never measured twice: ``done`` and the store's claims see to that)."""
    return trial.state.is_finished() and RECORD_ATTR not in trial.user_attrs


def mark_abandoned(study: optuna.Study, alive: Callable[[str], bool]) -> int:
    """Fail trials left RUNNING by a run that is gone (``alive("host:pid")`` is False), never a live one's, and
    queue their configurations again: an interrupted measurement is no result, so it is measured again."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if abandoned(trial, alive):
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted before it finished")
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker marked it at the same moment
            count += 1
            requeue(study, trial)
    return count


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue the configuration of an interrupted ``trial`` again, so that the next ask measures it."""
    frozen = study._storage.get_trial(trial._trial_id) if isinstance(trial, optuna.Trial) else trial
    params = frozen.system_attrs.get("fixed_params", frozen.params)
    backend = params.get("backend")
    if isinstance(backend, str) and len(params) > 1:  # else it was stopped before it had a configuration
        enqueue(study, backend, {k.removeprefix(f"{backend}."): v for k, v in params.items() if k != "backend"})


def abandoned(trial: optuna.trial.FrozenTrial, alive: Callable[[str], bool]) -> bool:
    """Whether a RUNNING trial's run is gone: its owner is not alive, or it never got an owner in ``STALE_AFTER_S``."""
    owner = trial.user_attrs.get("owner")
    if owner is None:  # asked a moment ago and not yet claimed, or abandoned in that moment
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() >= STALE_AFTER_S
    return not alive(f"{owner.get('host')}:{owner.get('pid')}")


def claim(trial: optuna.Trial) -> None:
    """Mark a running trial as this process's, so a later run can tell it was abandoned."""
    trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid()})


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished trial's record, in trial order (numbered as this study numbers them)."""
    found = []
    for trial in study.get_trials(deepcopy=False):
        data = trial.user_attrs.get(RECORD_ATTR)
        if data and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            found.append(TrialRecord.from_json(data, number=trial.number))
    return found


def figures(record: TrialRecord) -> dict[str, Any]:
    """Each figure as its own trial attribute, so optuna-dashboard shows them whole (it cuts long values)."""
    shown: dict[str, Any] = {"backend": record.backend, "configuration": record.label or "", "status": record.status}
    if record.precision:
        shown["precision"] = record.precision
    if record.bits_per_weight is not None:
        shown["bits per weight"] = round(record.bits_per_weight, 3)
    m = record.measurement
    if m is not None:
        shown |= {"decode tok/s": round(m.decode_tps, 2), "p95 ms/token": round(m.worst_itl_p95_ms, 2),
                  "TTFT ms": round(m.ttft_ms, 1)}
        if m.peak_rss_bytes is not None:
            shown["peak MiB"] = round(m.peak_rss_bytes / 2**20, 1)
    if record.quality is not None and record.quality.kl_divergence is not None:
        kl = record.quality.kl_divergence
        shown |= {"KL divergence": kl.value, "KL 95% low": kl.low, "KL 95% high": kl.high}
    if record.reason:
        shown["reason"] = record.reason[:1000]
    return shown


def record_attrs(record: TrialRecord) -> dict[str, Any]:
    """The user attributes a finished trial carries: the full record (for autotune) and its figures (for people)."""
    return {RECORD_ATTR: record.to_json(), **figures(record)}


def tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
    """Store the full record on the trial, then give Optuna its objectives and budget constraints.

    On SQLite two workers can pop the same queued trial (no row lock) and the other one may have ended it
    meanwhile; the record then goes into a finished trial of its own, so no measurement is lost, and
    ``record.number`` becomes that trial's number (the one the final table shows).
    """
    try:
        _tell(study, trial, record)
    except optuna.exceptions.UpdateFinishedTrialError:
        record.number = add_trial(study, finished_trial(record, trial.params, trial.distributions,
                                                        {"shared_queue_trial": trial.number}))


def end_quietly(study: optuna.Study, trial: optuna.Trial, state: TrialState, **attrs: Any) -> None:
    """End a trial that measured nothing (a repeat, a dropped backend); nothing to do if another worker ended it."""
    try:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
    for key, value in record_attrs(record).items():
        trial.set_user_attr(key, value)
    if record.status == "measured":
        for constraint, excess in record.violations.items():
            trial.set_constraint(constraint, excess)  # ≤ 0: within budget (judgment.violations)
        study._storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS, list(record.violations.values()))
        study.tell(trial, values=list(record.objectives()))
    else:
        study.tell(trial, state=TrialState.FAIL if record.status == "failed" else TrialState.PRUNED)


def enqueue_unseen(study: optuna.Study, backends: dict[str, Any], spaces: dict[str, SearchSpace],
                   done: dict[str, TrialRecord], dropped: dict[str, str], rng: random.Random) -> None:
    """After a repeat, queue a random configuration not tried yet (small spaces exhaust quickly).

    ``backends`` maps names to resolved backends (anything with a ``backend`` attribute).
    """
    live = sorted(set(backends) - set(dropped))
    for _ in range(64 if live else 0):
        name = rng.choice(live)
        params: Params = {}
        for dim_name, dim in spaces[name].items():
            params[dim_name] = (rng.choice(list(dim.choices)) if isinstance(dim, Categorical)
                                else rng.randrange(dim.low, dim.high + 1, dim.step))
        try:
            key = config_key(name, backends[name].backend.canonical_params(params))
        except Exception:  # noqa: BLE001 - the loop drops the backend when it asks for this configuration
            key = None
        if key not in done:
            enqueue(study, name, params)
            return
