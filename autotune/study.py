"""The Optuna study: naming, storage, suggesting backend parameters, and trial records.

Each trial's full record (backend, parameters, measurement, artifact, prediction, quality,
constraint violations, reason) is stored as JSON in the trial's user attributes the moment the
trial ends, so an interrupted run loses nothing and a rerun reuses every finished trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
import psutil
from optuna.trial import TrialState

from .backend import Backend, Categorical, IntRange, Params, SearchSpace
from .budget import Budget
from .cache import cache_dir
from .errors import StorageError
from .judgment import within
from .measurement import Measurement
from .profile import Quality
from .workload import Workload

RECORD_ATTR = "autotune_record"
TrialStatus = Literal["measured", "predicted-infeasible", "screened-out", "failed"]
"""measured: full figures exist; predicted-infeasible: skipped on a prediction over budget; screened-out: one short
run showed it cannot win (its screen figures are kept); failed: with a reason."""
OBJECTIVE_NAMES = ("quality_loss", "itl_p95_ms", "peak_rss_bytes")
"""All minimised. quality_loss is the mean KL divergence from the reference when measured."""


def default_storage() -> str:
    """SQLite file in the cache: rerunning a command from anywhere resumes its study."""
    return f"sqlite:///{cache_dir() / 'studies.sqlite3'}"


def study_name(model_sha256: str, model_name: str, fingerprint: str, workload: Workload, budget: Budget,
               backends: Sequence[str], extra: dict[str, Any] | None = None) -> str:
    """A readable, deterministic name: same model, machine, workload, budget and backends → same study."""
    identity = json.dumps(
        {"workload": workload.model_dump(), "budget": budget.model_dump(), "backends": sorted(backends), **(extra or {})},
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{model_name}-{model_sha256[:10]}-{fingerprint[:10]}-{digest}"


def config_key(backend: str, params: Params) -> str:
    """Canonical identity of a configuration, for spotting repeats."""
    return json.dumps({"backend": backend, "params": params}, sort_keys=True, default=str)


STORAGE_FORMS = "sqlite:///path/to/studies.db or postgresql+psycopg://user@host:5432/dbname"


def redact_url(url: str) -> str:
    """A storage URL with its password masked, for profiles, logs and messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unreadable URL is shown without anything after the scheme's user part
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    """The study storage at ``url`` (default: SQLite in the cache); any failure is one ``StorageError`` line."""
    import sqlalchemy.exc

    url = url or default_storage()
    shown = redact_url(url)
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(url)
    except ImportError as error:
        missing = (f"the database driver {error.name!r} is not installed" if error.name else
                   f"its database driver is not installed ({' '.join(str(error).split())[:120]})")
        raise StorageError(f"--storage {shown}: {missing}; for PostgreSQL install it with "
                           "`pip install 'psycopg[binary]'`") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"--storage {shown}: unknown database kind; use {STORAGE_FORMS}") from None
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"cannot read --storage {shown!r} as a database URL; use {STORAGE_FORMS}") from None
    except sqlalchemy.exc.OperationalError as error:
        detail = " ".join(str(error.orig).split())[:200]
        raise StorageError(f"cannot open --storage {shown}: {detail}; check that the server runs, the address and "
                           "the credentials, and that the file's folder is writable") from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(f"--storage {shown} failed: {type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
    except OSError as error:
        raise StorageError(f"cannot create the storage file for --storage {shown}: {error.strerror}") from None
    except RuntimeError as error:  # optuna: the schema was written by a newer version
        raise StorageError(f"--storage {shown} holds studies in a newer schema than this autotune's optuna reads "
                           f"({' '.join(str(error).split())[:200]}); upgrade autotune or use another storage") from None


def open_study(name: str, storage: str | None, seed: int | None) -> optuna.Study:
    """Create or load the study (multi-objective, constrained TPE)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(storage)
    # Constraints reach the sampler through trial.set_constraint (see Tuner._tell).
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    return optuna.create_study(study_name=name, storage=rdb, sampler=sampler, load_if_exists=True,
                               directions=["minimize"] * len(OBJECTIVE_NAMES))


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


def enqueue(study: optuna.Study, backend: str, params: Params) -> None:
    """Queue a configuration to be measured first (skipped when the study already has it)."""
    flat = {"backend": backend, **{f"{backend}.{k}": v for k, v in params.items()}}
    study.enqueue_trial(flat, skip_if_exists=True)


def mark_abandoned(study: optuna.Study) -> int:
    """Fail trials left RUNNING by an interrupted run of this host (never another host's live trial)."""
    host = socket.gethostname()
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("owner", {})
        if owner.get("host") == host and not psutil.pid_exists(int(owner.get("pid", -1))):
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted before it finished")
            study.tell(trial.number, state=TrialState.FAIL)
            count += 1
    return count


def claim(trial: optuna.Trial) -> None:
    """Mark a running trial as this process's, so a later run can tell it was abandoned."""
    trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid()})


@dataclass
class TrialRecord:
    """Everything one trial produced, JSON-serialisable."""

    number: int
    status: TrialStatus
    backend: str
    params: Params
    precision: str | None = None
    bits_per_weight: float | None = None
    artifact: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    measurement: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    violations: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    cause: str | None = None
    """The kind of failure or skip, for counting (``killed by SIGILL``, ``timed out``, ``memory``, ``latency``)."""
    label: str | None = None
    """The backend's compact description of the configuration (``Backend.describe``)."""

    @property
    def key(self) -> str:
        return config_key(self.backend, self.params)

    @property
    def measured(self) -> Measurement | None:
        return Measurement.model_validate(self.measurement) if self.measurement else None

    @property
    def quality_report(self) -> Quality | None:
        return Quality.model_validate(self.quality) if self.quality else None

    @property
    def feasible(self) -> bool:
        """Measured, and within every budget (see ``judgment.within``)."""
        return self.status == "measured" and within(self.violations)

    def objectives(self) -> tuple[float, float, float]:
        """The minimised objective values (quality loss, worst p95 ITL, peak memory)."""
        m = self.measured
        assert m is not None and m.peak_rss_bytes is not None
        return (quality_loss(self), m.worst_itl_p95_ms, float(m.peak_rss_bytes))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def quality_loss(record: TrialRecord) -> float:
    """Measured mean KL divergence, or the bits-per-weight proxy (16 − bits) when quality is unmeasured."""
    quality = record.quality_report
    if quality is not None and quality.kl_divergence is not None:
        return quality.kl_divergence.value
    return 16.0 - (record.bits_per_weight or 0.0)


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every finished trial's record, in trial order."""
    found = []
    for trial in study.get_trials(deepcopy=False):
        data = trial.user_attrs.get(RECORD_ATTR)
        if data and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            found.append(TrialRecord(**data))
    return found


def tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
    """Store the full record on the trial, then give Optuna its objectives and budget constraints."""
    trial.set_user_attr(RECORD_ATTR, record.to_json())
    if record.status == "measured":
        for constraint, excess in record.violations.items():
            trial.set_constraint(constraint, excess)  # ≤ 0: within budget (judgment.violations)
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
