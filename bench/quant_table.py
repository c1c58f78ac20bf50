"""Every reachable quantization of a model: size, peak memory, decode speed, p95 latency, quality loss.

The table a user wants before choosing. Runtime settings are the backend's first starting point
(all usable cores, default batch sizes) with only the quantization changed.

    .venv/bin/python bench/quant_table.py [--model gemma3-270m] [--eval-tokens 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autotune import SilentReporter, TuneOptions
from autotune.budget import format_bytes
from autotune.measure.quality_eval import QualityEvaluator
from autotune.measure.trial import measure
from autotune.model.bundled import model_path
from autotune.plugins.backend import Categorical
from autotune.search.sources import ResolvedBackend
from autotune.workload import Workload

sys.path.insert(0, str(Path(__file__).parent))
from common import Bench, describe_machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--eval-tokens", type=int, default=1024)
    args = parser.parse_args()
    bench = Bench(model_path(args.model), args.backend)
    workload = Workload(depth=0)
    start = bench.backend.starting_points(bench.source, bench.hardware, workload)[0]
    quant_dim = bench.backend.search_space(bench.source, bench.hardware, workload)["quant"]
    assert isinstance(quant_dim, Categorical)
    reporter = SilentReporter()
    evaluator = QualityEvaluator.create([ResolvedBackend(bench.backend, bench.source, [])], bench.source.format,
                                        bench.hardware, workload, TuneOptions(eval_tokens=args.eval_tokens), reporter)
    print(f"machine: {describe_machine(bench.hardware)}")
    print(f"model: {bench.source.path.name} ({bench.source.precision}); settings: {bench.backend.describe(start)}")
    print(f"workload: {workload.prompt_tokens} prompt + {workload.gen_tokens} generated tokens, context {workload.context}; "
          f"quality on {args.eval_tokens} tokens of the bundled text vs the source")
    header = f"{'quant':<8} {'written as':<28} {'bpw':>5} {'size':>10} {'peak RSS':>10} {'tok/s':>6} {'p95 ms':>7} " \
             f"{'KL divergence [95% CI]':>26} {'top-1':>6} {'ppl ×':>6}"
    print(header)
    for quant in quant_dim.choices:
        params = {**start, "quant": quant}
        artifact = bench.artifact(params)
        result = measure(bench.backend, artifact, params, workload, timeout_s=600, memory_limit_bytes=None)
        quality = evaluator.evaluate(ResolvedBackend(bench.backend, bench.source, []), artifact, params) if evaluator else None
        written = ",".join(f"{k}:{v}" for k, v in sorted(artifact.details.get("tensor_types", {}).items()) if k != "F32")
        if not result.ok:
            print(f"{quant:<8} measurement failed: {result.error}")
            continue
        m = result.value
        kl = quality.kl_divergence if quality else None
        kl_text = f"{kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}]" if kl else "-"
        top1 = f"{quality.top1_agreement.value:.1%}" if quality and quality.top1_agreement else "-"
        ppl = f"{quality.perplexity_ratio.value:.3f}" if quality and quality.perplexity_ratio else "-"
        print(f"{quant:<8} {written[:28]:<28} {artifact.bits_per_weight:>5.2f} {format_bytes(artifact.size_bytes):>10} "
              f"{format_bytes(m.peak_rss_bytes):>10} {m.decode_tps:>6.1f} {m.itl_p95_ms:>7.1f} {kl_text:>26} {top1:>6} {ppl:>6}")
    for warning in reporter.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
