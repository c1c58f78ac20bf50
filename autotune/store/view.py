"""The study as a view of the measurement store, opened before the search: the study seeded with every
compatible stored record, stale figures named, the warm start and the starting points queued.

During the search, ``store.shared`` keeps what this run measures and claims what it measures; the warm
start's choice is ``store.warm_start``; confirmation rounds are kept by ``store.memo``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from autotune.budget import Budget
from autotune.context import RunContext
from autotune.hardware import Hardware
from autotune.measure.quality_eval import SCORING_VERSION
from autotune.model.source import cached_content_hash
from autotune.options import TuneOptions
from autotune.plugins.backend import Params, SearchSpace
from autotune.record import TrialRecord
from autotune.search.queue import enqueue, mark_abandoned
from autotune.search.trials import add_record, records
from autotune.store.cache import key_digest
from autotune.store.measurements import MeasurementStore, Scope, StoredRecord
from autotune.store.warm_start import warm_starts
from autotune.workload import Workload

SEED_WAIT_S = 120.0
"""How long a worker waits for another one seeding the same study before seeding it itself."""


@dataclass
class Seeded:
    """What the store contributed to this run's study."""

    added: int = 0
    """Records added to the study as finished trials (judged against this budget)."""
    measured: int = 0
    """Of those, how many reached measurement (they count toward ``--trials`` like this run's own)."""
    known: dict[str, TrialRecord] = field(default_factory=dict)
    """Every configuration the store holds current figures for: never measured again."""
    stale: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Backend → (runtime version of its stale records, how many): measured again, never mixed in."""


def search_scope(model_path: Path, hardware: Hardware, workload: Workload, options: TuneOptions) -> Scope:
    """The scope of a search: the model's content, this machine, and the workload with what scores quality."""
    return Scope(cached_content_hash(model_path), model_path.name.removesuffix(".gguf"), hardware.fingerprint,
                 {"workload": workload.key(), "quality": options.measure_quality,
                  "eval": str(options.eval_text or "bundled"), "eval_tokens": options.eval_tokens,
                  "scoring": SCORING_VERSION})


@contextmanager
def exclusive(store: MeasurementStore, what: str, wait_s: float = SEED_WAIT_S) -> Iterator[None]:
    """Run the block while holding the claim ``what``: one worker at a time (e.g. seeding one study)."""
    key = key_digest({"exclusive": what}, 48)
    deadline = time.monotonic() + wait_s
    while not store.claim(key) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield
    finally:
        store.release(key)


def seed(study: optuna.Study, store: MeasurementStore, scope: Scope, runtimes: Mapping[str, str],
         spaces: dict[str, SearchSpace], budget: Budget) -> Seeded:
    """Add every current stored record of ``scope`` the study lacks; report the stale ones apart."""
    seeded = Seeded()
    backends = list(runtimes)
    with exclusive(store, f"seed {study.study_name}"):
        in_study = {record.key for record in records(study)}
        for stored in store.records(scope, runtimes):
            if stored.stale:
                old, count = seeded.stale.get(stored.backend, (stored.runtime, 0))
                seeded.stale[stored.backend] = (old, count + 1)
                continue
            record = TrialRecord.from_json(stored.record)
            seeded.known[record.key] = record
            if record.key in in_study:
                continue
            if add_record(study, record, spaces, budget, backends, origin=describe_origin(stored)):
                in_study.add(record.key)
                seeded.added += 1
                seeded.measured += record.spent
    return seeded


def open_view(context: RunContext, study: optuna.Study, store: MeasurementStore, scope: Scope,
              runtimes: Mapping[str, str], spaces: dict[str, SearchSpace], starts: Mapping[str, list[Params]]) -> Seeded:
    """Before the search: join the workers, fail trials of runs that are gone, seed the study from the store,
    queue the backends' starting points and the warm start; say what was reused and what is stale."""
    budget, reporter = context.budget, context.reporter
    store.join()
    abandoned = mark_abandoned(study, store.alive)
    if abandoned:
        reporter.warn(f"{abandoned} trial(s) of an interrupted run were marked failed")
    own = len(records(study))
    seeded = seed(study, store, scope, runtimes, spaces, budget)
    for message in stale_messages(seeded, runtimes):
        reporter.warn(message)
    if own:
        reporter.info(f"resuming study {study.study_name}: {own} finished trial(s) reused, not re-measured")
    if seeded.added:
        reporter.info(f"{seeded.added} configuration(s) measured for other budgets, objectives or backend sets "
                      "taken from the store, not re-measured")
    for backend, points in warm_starts(store, scope, context.hardware, spaces, budget, context.options.objective).items():
        reporter.info(f"warm start: {len(points)} {backend} configuration(s) that did best on the nearest machine "
                      "in the store are measured first")
        for params in points:
            enqueue(study, backend, params)
    for backend_name, points in starts.items():  # after the warm start: the measured best elsewhere goes first
        for params in points:
            enqueue(study, backend_name, params)
    return seeded


def describe_origin(stored: StoredRecord) -> str:
    """Where a seeded trial's figures come from, for the dashboard and the profile."""
    return f"measured on {stored.host} at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(stored.measured_at))} UTC"


def stale_messages(seeded: Seeded, runtimes: Mapping[str, str]) -> list[str]:
    """One line per backend whose stored figures were measured with another runtime version."""
    return [f"{count} stored measurement(s) of {backend} {old} are stale (installed now: {runtimes[backend]}): "
            "not used; measured again where the search reaches them" for backend, (old, count) in seeded.stale.items()]
