"""The Optuna study of a search: its readable name, its storage (SQLite or PostgreSQL) and its objectives.

What its trials hold is ``search.trials``; what is measured next and by whom, ``search.queue``; how a
backend's search space is asked of Optuna, ``search.space``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna

from autotune.budget import Budget
from autotune.store.cache import key_digest
from autotune.store.storage import create_engine, default_storage, is_sqlite, schema_lock, storage_errors

OBJECTIVE_NAMES = ("quality_loss", "itl_p95_ms", "peak_rss_bytes")
"""All minimised. quality_loss is the mean KL divergence from the reference when measured."""
METRIC_NAMES = ("quality loss (mean KL, or 16 - bits/weight)", "p95 ms/token", "peak memory bytes")
"""How optuna-dashboard labels the objectives."""


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
