"""A loaded deep fill against a prefilled one: same decode at depth, less time per measurement.

The deep run of a single-stream measurement fills the KV cache to ``workload.deep_start`` before it times decode
steps there (``autotune.plugins.protocol``); a backend that can save its cache loads that fill from the
previous measurement of a configuration whose cache holds the same values (``autotune.store.snapshots``). This
measures, in paired interleaved rounds (each measurement a fresh worker, as the confirmation rounds run them),
the default workload's measurement of one configuration with its fill prefilled (the snapshot removed first) and
loaded but for its last micro-batch (the snapshot kept), in alternating order, and prints per round the wall seconds and the p50/p95 decode
latency at depth of both, then the ratios loaded / prefilled with bootstrap intervals over rounds and the load
average while they ran. Expected: p50 and p95 at depth tie (what a step costs depends on how many positions it
attends to, not on their values); wall time lower by the fill's prefill. A model with sliding-window layers (Gemma
3, the default) keeps no fill (``LlamaCppBackend.kept_fill`` says why): the bench says so and stops.

    .venv/bin/python bench/kept_fill.py [--model smollm2-135m] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import Bench, describe_machine

from autotune.decide.stats import paired_ratio
from autotune.measure.trial import measure
from autotune.measurement import Measurement
from autotune.model.bundled import default_model_path, model_path
from autotune.workload import Workload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a GGUF or a bundled model name (default: the bundled default)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    bench = Bench(model_path(args.model) if args.model else default_model_path())
    params = {**bench.backend.untuned_params(bench.source, bench.hardware, Workload()), "n_threads": args.threads}
    artifact = bench.artifact(params)
    workload = Workload(runs=1)  # one timed run, then the deep run: a confirmation round's measurement
    kept = bench.backend.kept_fill(artifact, params, workload)  # type: ignore[attr-defined]
    if kept is None:
        print(f"{artifact.path.name}: the backend keeps no fill for this model (a sliding-window cache is saved only "
              "in part, so a loaded fill would not decode as a prefilled one); nothing to compare")
        return 0
    snapshot = kept.path
    print(f"machine: {describe_machine(bench.hardware)}")
    print(f"model: {artifact.path.name} {bench.backend.describe(params)}; {workload.describe()}; "
          f"{args.rounds} paired rounds\n")
    figures: dict[str, list[tuple[float, Measurement]]] = {"prefilled": [], "loaded": []}
    loads = []
    measure(bench.backend, artifact, params, workload, timeout_s=300, memory_limit_bytes=None)  # saves the fill
    for index in range(args.rounds):
        order = ["prefilled", "loaded"] if index % 2 == 0 else ["loaded", "prefilled"]
        for name in order:
            if name == "prefilled":
                snapshot.unlink(missing_ok=True)
            started = time.perf_counter()
            result = measure(bench.backend, artifact, params, workload, timeout_s=300, memory_limit_bytes=None)
            if not result.ok:
                print(f"round {index + 1}: {name} failed: {result.error}")
                return 1
            figures[name].append((time.perf_counter() - started, result.value))
        loads.append(os.getloadavg()[0])
        print(f"round {index + 1}: " + ", ".join(
            f"{name} {figures[name][-1][0]:.1f} s, p50/p95 at depth {figures[name][-1][1].deep_itl_p50_ms:.1f}/"
            f"{figures[name][-1][1].deep_itl_p95_ms:.1f} ms" for name in order) + f" (load average {loads[-1]:.2f})",
            flush=True)
    print()
    for label, pick in [("wall seconds", lambda m: m[0]), ("p50 at depth", lambda m: m[1].deep_itl_p50_ms),
                        ("p95 at depth", lambda m: m[1].deep_itl_p95_ms)]:
        ratio = paired_ratio([pick(m) for m in figures["loaded"]], [pick(m) for m in figures["prefilled"]])
        print(f"{label:<13} loaded / prefilled: {ratio.value:.3f} [{ratio.low:.3f}, {ratio.high:.3f}]")
    print(f"load average during the rounds: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
