"""Search efficiency: autotune's search vs an exhaustive grid, on measured llama-bench grids (replayed).

For each grid and seed, the tuner measures configurations one by one; we record after how many
trials its best-so-far feasible configuration is within 5% of the grid's best feasible decode
speed, and how long that took (worker start-up included, no model runs: timings are replayed).

    .venv/bin/python bench/search_efficiency.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.testing.replay_backend import OVERHEAD_BYTES, ReplayBackend
from autotune.workload import Workload

GRIDS = Path(__file__).parents[1] / "tests" / "fixtures" / "measurements" / "xeon-16c-llamabench"
CASES = [("grid_125m.json", "200MB"), ("grid_1b.json", "800MB"), ("grid_1b.json", "2GB")]


def trials_to_within(grid: Path, budget_text: str, seed: int) -> tuple[int | None, float, int]:
    backend = ReplayBackend(grid)
    budget = Budget.parse(budget_text, "1s")
    feasible = {k: e["decode"]["avg_ts"] for k, e in backend.grid.items() if e["size"] + OVERHEAD_BYTES <= budget.memory_bytes}
    target = 0.95 * max(feasible.values())
    manager = manager_with(backend)
    reporter = SilentReporter()
    model = Path(tempfile.mkdtemp()) / "m.gguf"
    model.write_bytes(b"GGUF" + seed.to_bytes(4, "little"))
    options = TuneOptions(trials=len(backend.grid), timeout_s=60, measure_quality=False, confirm_rounds=0,
                          objective="latency", seed=seed)
    started = time.perf_counter()
    Tuner(model, budget, Workload(prompt_tokens=128, gen_tokens=64, context=512, depth=0), options, manager=manager,
          hardware=example_hardware(cores=16), reporter=reporter).run()
    wall = time.perf_counter() - started
    measured = [r for r in reporter.trials if r.status != "predicted-infeasible"]
    per_trial = wall / max(len(measured), 1)
    for index, record in enumerate(measured, start=1):
        # Judge by the grid's mean decode speed of the configuration found (the replay adds no noise).
        if (record.params["quant"], record.params["n_threads"]) in feasible and \
                feasible[(record.params["quant"], record.params["n_threads"])] >= target:
            return index, per_trial * index, len(backend.grid)
    return None, wall, len(backend.grid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AUTOTUNE_CACHE", tempfile.mkdtemp(prefix="autotune-bench-"))
    print(f"{'grid':<16} {'budget':>7} {'grid size':>9} {'trials to ≤5% (per seed)':>28} {'median':>7} {'time':>7}")
    for name, budget in CASES:
        results = [trials_to_within(GRIDS / name, budget, seed) for seed in range(args.seeds)]
        trials = [r[0] for r in results if r[0] is not None]
        times = [r[1] for r in results if r[0] is not None]
        shown = ",".join(str(r[0]) if r[0] is not None else "miss" for r in results)
        median = statistics.median(trials) if trials else float("nan")
        print(f"{name:<16} {budget:>7} {results[0][2]:>9} {shown:>28} {median:>7.1f} {statistics.median(times):>6.1f}s")
    print("exhaustive grid: every configuration measured (trials = grid size); time per replayed trial ≈ worker start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
