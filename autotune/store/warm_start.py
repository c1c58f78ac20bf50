"""The warm start: the best configurations stored for the nearest other machine of the same ISA family,
fitted to this one, are measured first (never taken as this machine's figures)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autotune.budget import Budget
from autotune.decide.judgment import judged
from autotune.decide.selection import choose, pareto_front
from autotune.hardware import Hardware
from autotune.plugins.backend import Categorical, IntRange, Params, SearchSpace
from autotune.record import TrialRecord
from autotune.store.cache import key_digest
from autotune.store.measurements import MeasurementStore, Scope

WARM_START_POINTS = 3


def device_summary(hardware: Hardware) -> dict[str, Any]:
    """What machines are compared by for the warm start: ISA family, features, cores, bandwidth."""
    return {"arch": hardware.cpu.architecture, "vendor": hardware.cpu.vendor, "brand": hardware.cpu.brand,
            "features": sorted(hardware.cpu.features), "cores": hardware.cpu.usable_cores,
            "bandwidth": hardware.memory.bandwidth_bytes_per_s}


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
