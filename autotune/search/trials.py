"""A study's trials and the records they hold: telling a trial its record, adding a stored one, reading them back.

Each trial's full record (backend, parameters, measurement, artifact, prediction, quality, constraint
violations, reason) is stored as JSON in the trial's user attributes the moment the trial ends, so an
interrupted run loses nothing and a rerun reuses every finished trial; each figure is also its own
attribute, for optuna-dashboard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from autotune.budget import Budget
from autotune.decide.judgment import judged as judged_against
from autotune.plugins.backend import SearchSpace
from autotune.record import TrialRecord, figures_of
from autotune.search.space import distributions, within_distribution

RECORD_ATTR = "autotune_record"
DASHBOARD_CONSTRAINTS = "constraints"
"""optuna-dashboard (0.21) reads a trial's constraints only from this system attribute, as a list; optuna 5 writes one
``constraints:<name>`` attribute per constraint instead. Both are written (the same values, in ``judgment.violations``
order), so the dashboard tells trials over budget apart; optuna then lists each constraint twice, under its name
and its position, which changes no feasibility and no ranking of violations."""


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished trial's record, in trial order (numbered as this study numbers them)."""
    found = []
    for trial in study.get_trials(deepcopy=False):
        data = trial.user_attrs.get(RECORD_ATTR)
        if data and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            found.append(TrialRecord.from_json(data, number=trial.number))
    return found


DASHBOARD_FIGURES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "backend": ("backend", str), "label": ("configuration", lambda label: label or ""), "status": ("status", str),
    "precision": ("precision", str), "bits_per_weight": ("bits per weight", lambda bits: round(bits, 3)),
    "decode_tps": ("decode tok/s", lambda tps: round(tps, 2)), "itl_p95_ms": ("p95 ms/token", lambda ms: round(ms, 2)),
    "ttft_ms": ("TTFT ms", lambda ms: round(ms, 1)), "peak_rss_bytes": ("peak MiB", lambda size: round(size / 2**20, 1)),
    "kl_divergence": ("KL divergence", float), "kl_low": ("KL 95% low", float), "kl_high": ("KL 95% high", float),
    "reason": ("reason", lambda reason: reason[:1000]),
}
"""How optuna-dashboard names and rounds each of ``figures_of``'s figures (it cuts long values, so each is its own)."""


def figures(record: TrialRecord) -> dict[str, Any]:
    """Each figure of ``figures_of`` as its own trial attribute, named and rounded for optuna-dashboard."""
    return {DASHBOARD_FIGURES[key][0]: DASHBOARD_FIGURES[key][1](value) for key, value in figures_of(record).items()
            if key in DASHBOARD_FIGURES and (value is not None or key == "label")}


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


def add_record(study: optuna.Study, record: TrialRecord, spaces: dict[str, SearchSpace], budget: Budget,
               backends: Sequence[str], origin: str) -> bool:
    """Add a stored record to ``study`` as a finished trial (judged against ``budget``); False when it lies outside
    this study's search space (it still counts as known: the caller never measures it again)."""
    every = distributions(backends, spaces)
    params: dict[str, Any] = {"backend": record.backend,
                              **{f"{record.backend}.{k}": v for k, v in record.params.items()}}
    used = {key: every.get(key) for key in params}
    for key, distribution in used.items():
        if distribution is None or not within_distribution(distribution, params[key]):
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
