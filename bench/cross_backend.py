"""One model, every backend, one budget: the best configuration per backend, side by side.

Runs `autotune run` on SmolLM2-135M-Instruct (Q4_1 GGUF; converted to HF/ONNX/OpenVINO IR by the plugins'
conversions) with llama.cpp, ONNX Runtime and OpenVINO in one study, then prints the profile's winner and
best configuration per backend: decode tok/s, p95 ITL, TTFT, peak memory, quality loss vs the source.

    .venv/bin/python bench/cross_backend.py [--budget 1GB] [--latency 50ms] [--trials 18] [--backend ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budget", default="1GB")
    parser.add_argument("--latency", default="50ms")
    parser.add_argument("--trials", default="18")
    parser.add_argument("--backend", action="append", default=None)
    args = parser.parse_args()
    backends = args.backend or ["llamacpp", "onnxruntime", "openvino"]
    out = Path(tempfile.mkdtemp(prefix="autotune-cross-"))
    command = [sys.executable, "-m", "autotune", "run", "--model", args.model, "--budget", args.budget,
               "--latency", args.latency, "--trials", args.trials, "--out", str(out), "--json",
               *[f"--backend={b}" for b in backends]]
    print(" ".join(command[2:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-4000:])
        return 1
    profile = json.loads(result.stdout)
    rows = [{"backend": profile["backend"]["name"], "params": profile["params"], "measured": profile["measured"],
             "quality": profile["quality"], "precision": profile["artifact"]["precision"], "chosen": True}]
    rows += [{**alt, "chosen": False} for alt in profile["alternatives"]]
    chosen_trial = profile["study"]["best_per_backend"]
    best = {row["backend"]: row for row in rows
            if row["chosen"] or row.get("trial") == chosen_trial.get(row["backend"])}
    best[profile["backend"]["name"]] = rows[0]
    print(f"\nmachine: {profile['hardware'].get('cpu')}, {profile['hardware'].get('usable_cores')} usable cores; "
          f"budget {args.budget}, p95 ≤ {args.latency}; objective {profile['objective'].split(':')[0]}")
    print(f"{'backend':<12} {'configuration':<44} {'tok/s':>6} {'p95 ms':>7} {'TTFT ms':>8} {'peak MiB':>9} "
          f"{'KL [95% CI]':>24} {'top-1':>6}")
    for backend in backends:
        row = best.get(backend)
        if row is None:
            print(f"{backend:<12} no feasible configuration (see the run's warnings)")
            continue
        m, q = row["measured"], row.get("quality") or {}
        kl = q.get("kl_divergence")
        kl_text = f"{kl['value']:.4f} [{kl['low']:.4f}, {kl['high']:.4f}]" if kl else "-"
        top1 = f"{q['top1_agreement']['value']:.1%}" if q.get("top1_agreement") else "-"
        settings = " ".join(f"{k}={v}" for k, v in row["params"].items())
        mark = "★ " if row["chosen"] else ""
        worst = max(m["itl_p95_ms"], m.get("deep_itl_p95_ms") or 0)
        print(f"{backend:<12} {mark + settings[:42]:<44} {m['decode_tps']:>6.1f} {worst:>7.1f} {m['ttft_ms']:>8.0f} "
              f"{m['peak_rss_bytes'] / 2**20:>9.0f} {kl_text:>24} {top1:>6}")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    for line in warnings:
        print(line[:300])
    print(f"profile: {next(out.glob('*.json'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
