"""Tuned profile vs llama-cpp-python's untuned default, measured side by side in alternating rounds.

The untuned default is what `llama_cpp.Llama(model_path=...)` does out of the box: n_threads =
cpu_count() // 2, n_batch 512, f16 KV cache, no flash attention, mmap (the backend's
`untuned_params`). Each round measures both in fresh worker processes, order alternating.

    .venv/bin/python bench/tuned_vs_untuned.py PROFILE.json [--rounds 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from autotune.decide.stats import compare
from autotune.measure.trial import measure
from autotune.profile.reading import load_profile

sys.path.insert(0, str(Path(__file__).parent))
from common import Bench, describe_machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    profile = load_profile(args.profile)
    bench = Bench(Path(profile.model.path), profile.backend.name)
    workload = profile.workload.model_copy(update={"runs": 3, "depth": 0})
    configs = {
        "tuned": profile.params,
        "untuned": bench.backend.untuned_params(bench.source, bench.hardware, workload),
    }
    artifacts = {name: bench.artifact(params) for name, params in configs.items()}
    tps: dict[str, list[float]] = {name: [] for name in configs}
    p95: dict[str, list[float]] = {name: [] for name in configs}
    print(f"machine: {describe_machine(bench.hardware)}")
    for name, params in configs.items():
        print(f"{name:>8}: {bench.backend.describe(params)}")
    for index in range(args.rounds):
        order = list(configs) if index % 2 == 0 else list(reversed(configs))
        for name in order:
            result = measure(bench.backend, artifacts[name], configs[name], workload, timeout_s=600, memory_limit_bytes=None)
            if not result.ok:
                print(f"round {index + 1}: {name} failed: {result.error}")
                return 1
            tps[name].append(result.value.decode_tps)
            p95[name].append(result.value.itl_p95_ms)
        print(f"round {index + 1}: tuned {tps['tuned'][-1]:.1f} tok/s, untuned {tps['untuned'][-1]:.1f} tok/s")
    speed = compare(tps["tuned"], tps["untuned"], higher_is_better=True)
    latency = compare(p95["tuned"], p95["untuned"], higher_is_better=False)
    print(f"\n{'':>8} {'decode tok/s (median)':>22} {'p95 ms (median)':>16}")
    for name in configs:
        print(f"{name:>8} {statistics.median(tps[name]):>22.1f} {statistics.median(p95[name]):>16.1f}")
    r = speed.ratio
    print(f"decode speed ratio tuned/untuned: {r.value:.2f} [{r.low:.2f}, {r.high:.2f}] (95% paired bootstrap), "
          f"verdict: {speed.verdict} ({speed.reason})")
    q = latency.ratio
    print(f"p95 latency ratio tuned/untuned: {q.value:.2f} [{q.low:.2f}, {q.high:.2f}], verdict: {latency.verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
