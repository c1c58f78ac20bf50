"""Answers from the measurement store alone: what would be picked for a budget, and what is stored.

Nothing is measured here. Every answer names the figures it rests on, where and how long ago they
were measured, and how many stored figures were left aside as stale (another runtime version).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.budget import Budget
from autotune.decide.judgment import judged, nothing_fits_message
from autotune.decide.selection import choose, pareto_front
from autotune.errors import NothingFits
from autotune.hardware import Hardware
from autotune.options import TuneOptions
from autotune.plugins.manager import PluginManager
from autotune.record import TrialRecord, figures_of
from autotune.search.sources import select_backends
from autotune.store.measurements import MeasurementStore, StoredRecord, runtimes_of
from autotune.store.view import search_scope
from autotune.workload import Workload


@dataclass
class StoredAnswer:
    """The pick for a budget from stored figures, and what it rests on."""

    winner: TrialRecord
    front: list[TrialRecord]
    rests_on: list[StoredRecord]
    """Every current stored record considered (measured or failed), oldest first."""
    stale: int
    """Stored records of another runtime version, left aside."""

    def to_json(self) -> dict[str, Any]:
        """The answer as plain data (``autotune answer --json``)."""
        ages = [s.age_s for s in self.rests_on]
        return {"winner": figures_of(self.winner), "front": [figures_of(r) for r in self.front],
                "measurements": len(self.rests_on), "stale_left_aside": self.stale,
                "hosts": sorted({s.host for s in self.rests_on}),
                "oldest_s": round(max(ages), 1) if ages else None, "newest_s": round(min(ages), 1) if ages else None,
                "measured_now": 0, "confirmed": False}


def answer_from_store(model_path: Path, budget: Budget, workload: Workload, options: TuneOptions,
                      manager: PluginManager, hardware: Hardware) -> StoredAnswer:
    """Pick as ``autotune run`` would, from the stored figures of this model, machine and workload only.

    Raises ``NothingFits`` when nothing is stored (say what to run) or nothing stored meets ``budget``.
    Unlike ``run`` there is no confirmation: the pick rests on single search measurements.
    """
    scope = search_scope(model_path, hardware, workload, options)
    runtimes = runtimes_of(select_backends(manager, options.backends))
    store = MeasurementStore(options.storage)
    try:
        stored = store.records(scope, runtimes)
    finally:
        store.close()
    current = [s for s in stored if not s.stale]
    stale = len(stored) - len(current)
    if not current:
        extra = f" ({stale} stored figure(s) are stale: another runtime version)" if stale else ""
        raise NothingFits(f"nothing is stored for {model_path.name} with this workload on this machine{extra}; "
                          "run `autotune run` with the same options first")
    judged_records = [judged(TrialRecord.from_json(s.record), budget) for s in current]
    feasible = [r for r in judged_records if r.feasible]
    if not feasible:
        raise NothingFits(f"from {len(current)} stored measurement(s): " + nothing_fits_message(judged_records, budget, {}))
    front = pareto_front(feasible)
    return StoredAnswer(winner=choose(front, options.objective), front=front, rests_on=current, stale=stale)


@dataclass
class StoredModel:
    """What the store holds for one model on one machine."""

    fingerprint: str
    model_name: str
    model_sha256: str
    runtimes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    measured: list[TrialRecord] = field(default_factory=list)
    failed: int = 0
    stale: int = 0
    newest: float = 0.0

    def fastest_per_backend(self) -> dict[str, TrialRecord]:
        """The fastest-decoding measured configuration of each backend, whatever the budget (a listing judges none;
        ``selection.best_per_backend`` is the best *feasible* one by the run's objective)."""
        best: dict[str, TrialRecord] = {}
        for record in self.measured:
            m, held = record.measurement, best.get(record.backend)
            if m is not None and (held is None or m.decode_tps > (held.measurement.decode_tps if held.measurement else 0)):
                best[record.backend] = record
        return best

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "model": self.model_name, "model_sha256": self.model_sha256,
                "measured": len(self.measured), "failed": self.failed, "stale": self.stale,
                "runtimes": {k: sorted(v) for k, v in self.runtimes.items()},
                "newest_age_s": round(time.time() - self.newest, 1),
                "fastest_per_backend": {k: figures_of(v) for k, v in self.fastest_per_backend().items()},
                "front": [figures_of(r) for r in pareto_front([r for r in self.measured if r.measurement is not None
                                                                and r.measurement.peak_rss_bytes is not None])]}


def stored_models(storage: str | None, installed: dict[str, str], fingerprint: str | None = None,
                  model_sha256: str | None = None) -> list[StoredModel]:
    """Everything stored, per machine and model; figures of another runtime than ``installed`` count as stale."""
    store = MeasurementStore(storage)
    try:
        rows = store.everything(model_sha256=model_sha256, fingerprint=fingerprint)
    finally:
        store.close()
    grouped: dict[tuple[str, str], StoredModel] = {}
    for row in rows:
        key = (row.fingerprint, row.model_sha256)
        entry = grouped.setdefault(key, StoredModel(row.fingerprint, row.model_name, row.model_sha256))
        entry.runtimes[row.backend].add(row.runtime)
        entry.newest = max(entry.newest, row.measured_at)
        if row.backend in installed and row.runtime != installed[row.backend]:
            entry.stale += 1
            continue
        record = TrialRecord.from_json(row.record)
        if record.status == "measured":
            entry.measured.append(record)
        else:
            entry.failed += 1
    return list(grouped.values())
