"""The study as a view of the measurement store: seeding, claiming, keeping, and the warm start.

``tuner.py`` calls these at four points: before the search (``seed`` the study with every compatible
stored record, queue the ``warm_starts`` of the nearest machines), around each measurement
(``claimed`` so no two workers measure one configuration; ``keep`` the record in the store), and after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autotune.budget import Budget
from autotune.context import RunContext
from autotune.decide.judgment import judged
from autotune.decide.selection import choose, pareto_front
from autotune.hardware import Hardware
from autotune.model.source import cached_content_hash
from autotune.options import TuneOptions
from autotune.plugins.backend import Categorical, IntRange, Params, SearchSpace
from autotune.record import TrialRecord
from autotune.search.queue import abandoned, enqueue, mark_abandoned
from autotune.search.trials import add_record, records
from autotune.store.cache import key_digest
from autotune.store.measurements import MeasurementStore, Scope, StoredRecord, storable
from autotune.workload import Workload

SEED_WAIT_S = 120.0
"""How long a worker waits for another one seeding the same study before seeding it itself."""
WARM_START_POINTS = 3


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
                 {"workload": workload.model_dump(), "quality": options.measure_quality,
                  "eval": str(options.eval_text or "bundled"), "eval_tokens": options.eval_tokens})


def device_summary(hardware: Hardware) -> dict[str, Any]:
    """What machines are compared by for the warm start: ISA family, features, cores, bandwidth."""
    return {"arch": hardware.cpu.architecture, "vendor": hardware.cpu.vendor, "brand": hardware.cpu.brand,
            "features": sorted(hardware.cpu.features), "cores": hardware.cpu.usable_cores,
            "bandwidth": hardware.memory.bandwidth_bytes_per_s}


def claim_key(scope: Scope, backend: str, runtime: str, config_key: str) -> str:
    """The claim a worker holds while it measures one configuration of one search scope."""
    return key_digest({"scope": scope.key, "backend": backend, "runtime": runtime, "config": config_key}, 48)


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


def keep(store: MeasurementStore, scope: Scope, runtime: str, record: TrialRecord) -> None:
    """Store ``record`` when its outcome holds whatever the budget (see ``store.storable``)."""
    data = record.to_json()
    if storable(data):
        store.put(scope, record.backend, runtime, record.key, data)


def warm_starts(store: MeasurementStore, scope: Scope, hardware: Hardware, spaces: dict[str, SearchSpace],
                budget: Budget, objective: str, points: int = WARM_START_POINTS) -> dict[str, list[Params]]:
    """The best configurations stored for the nearest other machine of the same ISA family, fitted to this one.

    "Best" by that machine's own figures: within this budget (if any is; else all), ranked as ``run``
    ranks by ``objective`` (``ranked``). Each is fitted
    by ``fit_to_space``: a thread count keeps its share of the cores (all 16 there → all 2 here, 2 of 2
    there → 16 of 16 here), another parameter outside this machine's space is clamped into it, and a
    categorical value this machine lacks drops the configuration. They are only starting points: every
    one is measured here before anything else, never taken as this machine's figures.
    """
    store.remember_device(scope.fingerprint, device_summary(hardware))
    elsewhere = store.records_elsewhere(scope.model_sha256, scope.workload_key, scope.fingerprint)
    if not elsewhere:
        return {}
    machines = store.devices()
    here = device_summary(hardware)
    nearest_first = sorted({r.fingerprint for r in elsewhere if r.fingerprint in machines},
                           key=lambda fingerprint: distance(here, machines[fingerprint]))
    nearest = next((f for f in nearest_first if math.isfinite(distance(here, machines[f]))), None)
    if nearest is None:
        return {}
    candidates = [judged(TrialRecord.from_json(r.record), budget) for r in elsewhere
                  if r.fingerprint == nearest and r.backend in spaces]
    candidates = [r for r in candidates if r.measurement is not None and r.measurement.peak_rss_bytes is not None]
    fitting = [r for r in candidates if r.feasible]
    chosen: dict[str, list[Params]] = {}
    seen: set[str] = set()
    for record in ranked(fitting or candidates, objective):
        params = fit_to_space(record.params, spaces[record.backend],
                              cores=(int(machines[nearest].get("cores") or 0), hardware.cpu.usable_cores))
        key = key_digest({"backend": record.backend, "params": params})
        if params is None or key in seen:
            continue
        seen.add(key)
        chosen.setdefault(record.backend, []).append(params)
        if len(seen) == points:
            break
    return chosen


def ranked(records: list[TrialRecord], objective: str) -> list[TrialRecord]:
    """``records`` best first for ``objective``: the winner ``choose`` picks, then the winner of the rest, ..."""
    remaining, order = list(records), []
    while remaining:
        best = choose(pareto_front(remaining), objective)
        order.append(best)
        remaining.remove(best)
    return order


def distance(here: Mapping[str, Any], there: Mapping[str, Any]) -> float:
    """How unlike two machines are: infinite across ISA families; else cores and bandwidth ratios, missing features."""
    if here.get("arch") != there.get("arch"):
        return math.inf
    cores = abs(math.log(max(1, int(here.get("cores") or 1)) / max(1, int(there.get("cores") or 1))))
    bandwidth = 0.0
    if here.get("bandwidth") and there.get("bandwidth"):
        bandwidth = abs(math.log(float(here["bandwidth"]) / float(there["bandwidth"])))
    ours, theirs = set(here.get("features") or ()), set(there.get("features") or ())
    features = len(ours ^ theirs) / max(1, len(ours | theirs))
    vendor = 0.0 if here.get("vendor") == there.get("vendor") else 0.5
    return cores + bandwidth + features + vendor


def fit_to_space(params: Params, space: SearchSpace, cores: tuple[int, int] | None = None) -> Params | None:
    """``params`` moved into ``space``, or None when a parameter is missing or a categorical value is not offered.

    With ``cores`` (usable cores where ``params`` was measured, usable cores here), a thread count (a
    parameter whose name contains "thread": ``n_threads``, ``intra_op_num_threads``, ``threads``) keeps
    its share of the cores, at least 1: 16 of 16 becomes 2 of 2, 2 of 2 becomes 16 of 16, 4 of 16 becomes
    1 of 2. It then takes the nearest value the space offers (a categorical list of counts included).
    Other integers are clamped to the range and its step; other categoricals are kept only if offered.
    """
    fitted: Params = {}
    for name, dimension in space.items():
        if name not in params:
            return None
        value = params[name]
        threads = _threads_here(name, value, cores)
        if isinstance(dimension, Categorical):
            counts = [c for c in dimension.choices if isinstance(c, int) and not isinstance(c, bool) and c > 0]
            if threads is not None and counts:
                value = min(counts, key=lambda count: (abs(math.log(count / threads)), count))
            if value not in dimension.choices:
                return None
            fitted[name] = value
        elif isinstance(dimension, IntRange):
            if not isinstance(value, int) or isinstance(value, bool):
                return None
            wanted = int(threads + 0.5) if threads is not None else value  # halves round up
            clamped = min(max(wanted, dimension.low), dimension.high)
            fitted[name] = dimension.low + (clamped - dimension.low) // dimension.step * dimension.step
    return fitted


def _threads_here(name: str, value: Any, cores: tuple[int, int] | None) -> float | None:
    """The thread count ``value`` of parameter ``name`` as the same share of this machine's cores, or None."""
    if cores is None or "thread" not in name.lower() or not isinstance(value, int) or isinstance(value, bool) \
            or value < 1 or min(cores) < 1:
        return None
    there, here = cores
    return max(1.0, value * here / there)


def stale_messages(seeded: Seeded, runtimes: Mapping[str, str]) -> list[str]:
    """One line per backend whose stored figures were measured with another runtime version."""
    return [f"{count} stored measurement(s) of {backend} {old} are stale (installed now: {runtimes[backend]}): "
            "not used; measured again where the search reaches them" for backend, (old, count) in seeded.stale.items()]


class SharedSearch:
    """One run's side of a search other workers may share: claims around measuring, records into the store."""

    def __init__(self, context: RunContext, study: optuna.Study, store: MeasurementStore, scope: Scope,
                 runtimes: Mapping[str, str], spaces: dict[str, SearchSpace]) -> None:
        self.context, self.study, self.store, self.scope, self.runtimes = context, study, store, scope, runtimes
        self.spaces = spaces

    def settle(self, timeout_s: float) -> int:
        """Wait (up to ``timeout_s``) until no other live worker measures in this scope; return how many still do.

        So that every worker of a fleet chooses from the same evidence: the last measurements in flight
        elsewhere land in the shared study before this run picks its answer.
        """
        deadline = time.monotonic() + timeout_s
        while (busy := self.store.others_measuring(self.scope.key) + self._others_running()) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        return busy

    def _others_running(self) -> int:
        """Trials of this study other live workers hold (asked, maybe not yet claimed); this run's are all told."""
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return sum(1 for trial in running if not abandoned(trial, self.store.alive))

    @contextmanager
    def claimed(self, backend: str, key: str, done: dict[str, TrialRecord]) -> Iterator[bool]:
        """Yield True when this run may measure ``key`` (claimed for it), False when it is known or being measured.

        A configuration another worker finished since this run started is added to ``done`` (and, from the
        store, to the study), so the caller never measures it twice.
        """
        if key in done:
            yield False
            return
        claim = claim_key(self.scope, backend, self.runtimes[backend], key)
        if not self.store.claim(claim, self.scope.key):
            yield False
            return
        try:
            finished = {record.key: record for record in records(self.study)}
            stored = self.store.lookup(self.scope, backend, self.runtimes[backend], key)
            if key in finished:
                done[key] = finished[key]
            elif stored is not None:
                done[key] = TrialRecord.from_json(stored.record)
                add_record(self.study, done[key], self.spaces, self.context.budget, list(self.runtimes),
                           origin=describe_origin(stored))
            yield key not in done
        finally:
            self.store.release(claim)

    def keep(self, record: TrialRecord) -> None:
        """Store what this run measured (see ``keep``)."""
        keep(self.store, self.scope, self.runtimes[record.backend], record)


class RoundsMemo:
    """Where confirmation rounds are kept: the study's attributes, and the store (any budget reuses them)."""

    def __init__(self, study: optuna.Study | None, store: MeasurementStore | None = None, scope: Scope | None = None,
                 runtimes: Mapping[str, str] | None = None) -> None:
        self.study, self.store, self.scope = study, store, scope
        self.runtime = key_digest(dict(runtimes or {}), 32)

    def get(self, key: str) -> Any:
        """The rounds stored under ``key``, or None."""
        if self.study is not None and key in self.study.user_attrs:
            return self.study.user_attrs[key]
        if self.store is not None and self.scope is not None:
            found = self.store.lookup(self.scope, "confirmation", self.runtime, key, kind="confirmation")
            return found.record if found is not None else None
        return None

    def put(self, key: str, rounds: dict[str, Any]) -> None:
        """Keep the rounds of ``key`` in the study and the store."""
        if self.study is not None:
            self.study.set_user_attr(key, rounds)
        if self.store is not None and self.scope is not None:
            self.store.put(self.scope, "confirmation", self.runtime, key, rounds, kind="confirmation")
