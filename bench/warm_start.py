"""The warm start by replay: a search on machine B with machine A's stored search (warm) and without it (cold).

Replays the two measured grids of the same 125M model (``tests/fixtures/measurements/``; no model runs):
the 16-core Xeon host (``xeon-16c-llamabench/grid_125m.json``: F16, Q8_0, Q4_0, Q4_K_M × threads 1, 2, 4,
8, 16) and the 2-core EPYC VM (``epyc-2c-llamabench/grid_125m.json``: the same types × threads 1, 2), each
with the hardware captured on that machine (``tests/fixtures/hardware/``, read through the probe's parsers
by ``autotune.testing.machines``). For each direction A→B:

1. machine A's search, as ``autotune run`` drives it with ``--patience 0`` and as many trials as A's grid
   has configurations, is kept in a measurement store (a temporary SQLite storage);
2. for each seed, machine B searches twice with the same model and workload: *warm* on a copy of that
   store (``warm_starts`` queues A's best configurations, fitted to B, before B's own starting points)
   and *cold* on an empty storage; with ``--clamped`` also *clamped*: warm, but with thread counts
   clamped into B's space as ``fit_to_space`` did before it kept their share of the cores. Objective
   latency, quality off, confirmation off, every other option at its default.

A trial is what the tuner counts as one (a configuration that reached a worker, fully measured or
screened). Figures are judged by the grid's mean decode tok/s, so noise cannot make a configuration look
better than it is. Per arm: trials until B's best feasible configuration (what a full search finds) was
first measured, and until one within 10% of it was; the best decode tok/s measured after k = 1, 2, 3, 5
trials; then the gain of warm over cold (mean and median over the seeds). Each B run is ended once it has
found the best and spent 5 trials (later trials cannot change these figures); a run that stops on its own
before finding it is a miss (counted as "never" in the medians, left out of the means).

    .venv/bin/python bench/warm_start.py [--seeds 10] [--noise 0.0] [--budget 1GB] [--clamped]

``--noise`` (relative sd) resamples each replayed run like a real machine (the replay's noise is not seeded:
those figures vary between invocations). Runtime: every trial starts a worker (≈0.6 s) and writes the
SQLite study (≈0.3 s); on the 2-core development VM (busy beside it) the default 10 seeds took 2.6 minutes,
4.3 with ``--clamped``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from autotune import Budget, SilentReporter, TuneOptions, Tuner, Workload
from autotune.errors import AutotuneError
from autotune.hardware import Hardware
from autotune.plugins.backend import Params, SearchSpace
from autotune.record import TrialRecord
from autotune.store import warm_start as store_warm_start
from autotune.testing.inline_plugin import manager_with
from autotune.testing.machines import captured_hardware
from autotune.testing.replay_backend import OVERHEAD_BYTES, ReplayBackend

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures"
WORKLOAD = Workload(prompt_tokens=128, gen_tokens=64, context=512, depth=0)
"""As the grids were measured: ``llama-bench -p 128 -n 64``."""
LATENCY_BUDGET = "1s"
"""Lenient: only the memory budget decides what is feasible."""
WITHIN = 0.10
KS = (1, 2, 3, 5)
"""Trials after which the best decode speed so far is shown."""
Key = tuple[str, int]


@dataclass(frozen=True)
class Machine:
    """A captured machine and the grid measured on it."""

    name: str
    hardware_folder: str
    grid_file: str

    @property
    def hardware(self) -> Hardware:
        return captured_hardware(FIXTURES / "hardware" / self.hardware_folder)

    def backend(self, noise: float) -> ReplayBackend:
        return ReplayBackend(FIXTURES / "measurements" / self.grid_file, noise=noise)


XEON = Machine("xeon-16c", "xeon-16c-h200", "xeon-16c-llamabench/grid_125m.json")
EPYC = Machine("epyc-2c", "epyc-2c-kvm", "epyc-2c-llamabench/grid_125m.json")


@dataclass
class Grid:
    """B's grid under the budget: what the searches are judged against."""

    feasible: dict[Key, float]
    """(quant, threads) → mean decode tok/s, for the configurations whose replayed memory fits the budget."""

    @classmethod
    def of(cls, backend: ReplayBackend, budget: Budget) -> Grid:
        return cls({key: float(entry["decode"]["avg_ts"]) for key, entry in backend.grid.items()
                    if entry["size"] + OVERHEAD_BYTES <= budget.memory_bytes})

    @property
    def best(self) -> float:
        return max(self.feasible.values())

    def speed(self, record: TrialRecord) -> float | None:
        """The grid's mean decode tok/s of a feasible record, else None."""
        return self.feasible.get(grid_key(record)) if record.feasible else None


@dataclass
class Run:
    """One search on B: the tok/s of each trial it spent, in order (None: not feasible)."""

    speeds: list[float | None]
    first: list[str]
    """The configurations of its first trials (quant t=threads)."""
    note: str = ""

    def trials_to(self, bar: float) -> int | None:
        return next((index + 1 for index, speed in enumerate(self.speeds) if speed is not None and speed >= bar), None)

    def best_after(self, k: int) -> float:
        return max((speed for speed in self.speeds[:k] if speed is not None), default=0.0)


@dataclass
class Direction:
    """A→B: A's stored search, then B's warm and cold runs over the seeds."""

    a: Machine
    b: Machine
    grid: Grid
    a_best: str = ""
    a_trials: int = 0
    runs: dict[str, list[Run]] = field(default_factory=dict)
    """Arm → one run per seed."""


class _Enough(Exception):
    """Raised from the reporter to end a B run once its figures cannot change any more."""


class Watching(SilentReporter):
    """Keeps the records; ends the run once B's best was measured and ``max(KS)`` trials were spent."""

    def __init__(self, grid: Grid) -> None:
        super().__init__()
        self.grid = grid
        self.spent: list[TrialRecord] = []

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        super().trial(index, total, record, best)
        if not record.spent:  # skipped on its prediction: no trial spent
            return
        self.spent.append(record)
        found = any((self.grid.speed(r) or 0.0) >= self.grid.best for r in self.spent)
        if found and len(self.spent) >= max(KS):
            raise _Enough


def grid_key(record: TrialRecord) -> Key:
    return str(record.params["quant"]), int(record.params["n_threads"])


def label(record: TrialRecord) -> str:
    return f"{record.params['quant']} t={record.params['n_threads']}"


def tune(machine: Machine, model: Path, storage: str, budget: Budget, reporter: SilentReporter, *, trials: int,
         seed: int, noise: float, patience: int = 4) -> str:
    """One search on ``machine``'s grid and hardware into ``storage``; the tuner's error line, or ''."""
    options = TuneOptions(trials=trials, timeout_s=60, measure_quality=False, confirm_rounds=0, objective="latency",
                          seed=seed, storage=storage, patience=patience)
    tuner = Tuner(model, budget, WORKLOAD, options, manager=manager_with(machine.backend(noise)),
                  hardware=machine.hardware, reporter=reporter)
    try:
        tuner.run()
    except _Enough:
        pass
    except AutotuneError as error:  # e.g. NothingFits: every configuration it tried was ruled out
        return f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return ""


@contextmanager
def clamped_threads() -> Iterator[None]:
    """The warm start as it was before it kept the share of cores: thread counts clamped into B's space."""
    keeping = store_warm_start.fit_to_space

    def clamping(params: Params, space: SearchSpace, cores: tuple[int, int] | None = None) -> Params | None:
        return keeping(params, space)

    store_warm_start.fit_to_space = clamping
    try:
        yield
    finally:
        store_warm_start.fit_to_space = keeping


def run_direction(a: Machine, b: Machine, seeds: int, noise: float, budget: Budget, scratch: Path,
                  arms: Sequence[str]) -> Direction:
    model = scratch / "g125m.gguf"  # one model for both machines: the store keys measurements by its content
    if not model.exists():
        model.write_bytes(b"GGUF" + b"g125m" * 16)
    grid_b = Grid.of(b.backend(0.0), budget)
    result = Direction(a, b, grid_b)
    stored = scratch / f"{a.name}.sqlite3"
    stored.unlink(missing_ok=True)
    reporter = SilentReporter()
    note = tune(a, model, f"sqlite:///{stored}", budget, reporter, trials=len(a.backend(0.0).grid), seed=0,
                noise=noise, patience=0)
    if note:
        raise SystemExit(f"machine {a.name}'s search failed: {note}")
    spent = [r for r in reporter.trials if r.spent]
    result.a_trials = len(spent)
    best = max((r for r in spent if r.feasible and r.measurement), key=lambda r: r.measurement.decode_tps)  # type: ignore[union-attr]
    result.a_best = f"{label(best)} {best.measurement.decode_tps:.0f} tok/s"  # type: ignore[union-attr]
    for seed in range(seeds):
        for arm in arms:
            storage = scratch / f"{b.name}-{arm}-{seed}.sqlite3"
            if arm != "cold":
                shutil.copyfile(stored, storage)
            watching = Watching(grid_b)
            with clamped_threads() if arm == "clamped" else nullcontext():
                note = tune(b, model, f"sqlite:///{storage}", budget, watching, trials=len(grid_b.feasible) + 4,
                            seed=seed, noise=noise)
            run = Run([grid_b.speed(r) for r in watching.spent], [label(r) for r in watching.spent[:4]], note)
            result.runs.setdefault(arm, []).append(run)
            storage.unlink()
    return result


def median_or_miss(values: Sequence[float | None]) -> float:
    return statistics.median(math.inf if v is None else v for v in values)


def shown(value: float | None) -> str:
    return "miss" if value is None or math.isinf(value) else f"{value:g}"


def gains(warm: Sequence[float | None], cold: Sequence[float | None]) -> tuple[float, float, int]:
    """Cold minus warm per seed where both found it: (mean, median, seeds counted)."""
    both = [c - w for w, c in zip(warm, cold, strict=True) if w is not None and c is not None]
    return (statistics.fmean(both), statistics.median(both), len(both)) if both else (math.nan, math.nan, 0)


def report(d: Direction) -> list[str]:
    grid, bar = d.grid, (1 - WITHIN) * d.grid.best
    best_keys = [f"{q} t={t}" for (q, t), v in grid.feasible.items() if v >= grid.best]
    lines = [f"{d.a.name} → {d.b.name}: A's search stored ({d.a_trials} trials; its best {d.a_best}); B's grid: "
             f"{len(grid.feasible)} feasible configurations, best {', '.join(best_keys)} {grid.best:.0f} tok/s, "
             f"within {WITHIN:.0%} ≥ {bar:.0f} tok/s ({sum(v >= bar for v in grid.feasible.values())} configuration(s))"]
    header = "    arm   trials to best: median mean  | to within 10%: median mean | best tok/s after k trials (median)"
    lines += [header, "    " + " " * 66 + "  ".join(f"k={k:<4}" for k in KS)]
    figures: dict[str, tuple[list[int | None], list[int | None]]] = {}
    for name, runs in d.runs.items():
        to_best = [r.trials_to(grid.best) for r in runs]
        to_bar = [r.trials_to(bar) for r in runs]
        figures[name] = (to_best, to_bar)
        found = [v for v in to_best if v is not None]
        near = [v for v in to_bar if v is not None]
        after = "  ".join(f"{statistics.median(r.best_after(k) for r in runs):<6.0f}" for k in KS)
        lines.append(f"    {name:<7} {shown(median_or_miss(to_best)):>19} {statistics.fmean(found) if found else math.nan:5.2f}"
                     f"  | {shown(median_or_miss(to_bar)):>20} {statistics.fmean(near) if near else math.nan:5.2f}"
                     f" | {after}   misses {len(runs) - len(found)}/{len(runs)}")
        lines.append(f"            per seed to best: {','.join(shown(v) for v in to_best)};  first trials (seed 0): "
                     f"{', '.join(runs[0].first)}")
        lines += [f"            note: {note}" for note in sorted({r.note for r in runs if r.note})]
    for arm in (name for name in d.runs if name != "cold"):
        lines.append(f"    gain of {arm} over cold (mean, median over the seeds):")
        for what, index in (("trials to best", 0), ("trials to within 10%", 1)):
            mean, median, counted = gains(figures[arm][index], figures["cold"][index])
            lines.append(f"      {what} (cold − {arm}, {counted} seeds): {mean:+.2f}, {median:+g}")
        ratios = {k: [w.best_after(k) / c.best_after(k) - 1 for w, c in zip(d.runs[arm], d.runs["cold"], strict=True)
                      if c.best_after(k)] for k in KS}
        lines.append("      best tok/s after k trials (" + arm + "/cold − 1): " + "; ".join(
            f"k={k} {statistics.fmean(r):+.1%}, {statistics.median(r):+.1%}" for k, r in ratios.items() if r))
        lines.append(f"      verdict: {verdict(figures[arm][0], figures['cold'][0], d)}")
    return lines


def verdict(warm: Sequence[int | None], cold: Sequence[int | None], d: Direction) -> str:
    mean, median, counted = gains(warm, cold)
    misses = sum(v is None for v in warm) - sum(v is None for v in cold)
    if counted == 0 or misses > 0 or mean < 0:
        return (f"the warm start HURTS here (mean {mean:+.2f} trials; {misses:+d} misses against cold): A's best "
                "configurations, fitted to B, are not B's best and are measured before B's own starting points")
    if mean > 0:
        return (f"the warm start helps: B's best is found {mean:.2f} trials earlier on average ({median:g} median) "
                "than without the store")
    if all(v == 1 for v in cold):
        return (f"no gain, and none possible: B's own first starting point ({d.runs['cold'][0].first[0]}) is B's "
                "best, so no search finds it earlier; the warm start only matches it")
    return "no gain: B's own starting points find its best as early as A's configurations do"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per direction and arm (default 10)")
    parser.add_argument("--noise", type=float, default=0.0, help="relative sd of replayed runs (default 0)")
    parser.add_argument("--budget", default="1GB", help="memory budget (default 1GB: every configuration fits)")
    parser.add_argument("--clamped", action="store_true",
                        help="also run the warm start as it was before it kept the share of cores (threads clamped)")
    args = parser.parse_args(argv)
    shm = Path("/dev/shm")  # Optuna's SQLite study commits after every step: on tmpfs that costs nothing
    with tempfile.TemporaryDirectory(prefix="warm-start-", dir=shm if shm.is_dir() else None) as scratch:
        os.environ["AUTOTUNE_CACHE"] = str(Path(scratch) / "cache")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        budget = Budget.parse(args.budget, LATENCY_BUDGET)
        print(f"warm start by replay: B searches with A's stored search (warm) and without (cold), {args.seeds} seeds, "
              f"memory budget {args.budget}, noise {args.noise:g}")
        started = time.perf_counter()
        for a, b in ((XEON, EPYC), (EPYC, XEON)):
            began = time.perf_counter()
            arms = ("warm", *(("clamped",) if args.clamped else ()), "cold")
            for line in report(run_direction(a, b, args.seeds, args.noise, budget, Path(scratch), arms)):
                print(line)
            print(f"    ({time.perf_counter() - began:.0f} s)", flush=True)
        print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
