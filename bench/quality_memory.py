"""Quality scoring's memory and time on a real model: the tuner's tree peak while each configuration is scored.

Scores the source (the reference, scored against itself for its bits per byte), the same with one thread
(no new score: threads cannot change outputs), and lower precisions with and without a quantized KV cache,
on the default workload (scored as deep as it decodes), in a fresh cache so every score really runs. Memory
figures do not depend on other load; the seconds do.

    .venv/bin/python bench/quality_memory.py [--model PATH] [--eval-tokens 1024] [--budget 2GB]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from autotune import SilentReporter, TuneOptions
from autotune.budget import format_bytes
from autotune.measure import tree_peak
from autotune.measure.quality_eval import QualityEvaluator
from autotune.model.bundled import model_path
from autotune.numbers import parse_size
from autotune.search.sources import ResolvedBackend
from autotune.workload import Workload

sys.path.insert(0, str(Path(__file__).parent))
from common import Bench, describe_machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--budget", default="2GB", help="the memory budget the tree peak is compared with")
    args = parser.parse_args()
    budget = parse_size(args.budget)
    path = model_path(args.model)
    with tempfile.TemporaryDirectory(prefix="autotune-quality-bench-") as cache:
        os.environ["AUTOTUNE_CACHE"] = cache  # every score runs: nothing cached from earlier runs
        bench = Bench(path)
        workload = Workload()
        resolved = ResolvedBackend(bench.backend, bench.source, [])
        evaluator = QualityEvaluator.create([resolved], bench.source.format, bench.hardware, workload,
                                            TuneOptions(eval_tokens=args.eval_tokens), SilentReporter())
        assert evaluator is not None
        layout = evaluator.layout
        print(f"machine: {describe_machine(bench.hardware)}")
        print(f"model: {bench.source.path.name}; workload reaches position {layout.chunk_tokens}; "
              f"{layout.scored_tokens} tokens scored in windows after the same {layout.depth} tokens of context "
              f"(evaluated once per model where the backend keeps shared context); {layout.text_bytes} bytes of text")
        start = bench.backend.starting_points(bench.source, bench.hardware, workload)[0]
        configurations = [start, {**start, "n_threads": 1}, {**start, "quant": "Q4_0"},
                          {**start, "quant": "Q4_0", "flash_attn": True, "type_kv": "q8_0"},
                          {**start, "quant": "Q4_0", "flash_attn": True, "type_kv": "q4_0"}]
        print(f"{'configuration':<44} {'s':>6} {'tree peak':>10} {'KL [95% CI]':>28} {'bits/byte':>9}")
        worst = 0
        for params in configurations:
            tree_peak.reset()
            started = time.perf_counter()
            quality = evaluator.evaluate(resolved, bench.artifact(params), params)
            seconds = time.perf_counter() - started
            peak = tree_peak.tuner_peak_tree_bytes()
            worst = max(worst, peak)
            kl = quality.kl_divergence if quality else None
            bpb = quality.bits_per_byte if quality else None
            kl_text = f"{kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}]" if kl else "-"
            print(f"{bench.backend.describe(params):<44} {seconds:>6.1f} {format_bytes(peak):>10} {kl_text:>28} "
                  f"{bpb.value if bpb else float('nan'):>9.3f}")
        verdict = "within" if worst <= budget else "OVER"
        print(f"largest tree peak while scoring: {format_bytes(worst)} ({verdict} the {format_bytes(budget)} budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
