"""Three independent runs of `autotune run --budget 2GB --latency 50ms` on the default model.

Each run has its own study (a separate SQLite file; artifacts and quality scores are shared through
the cache, which does not change measurements). Reports each winner, whether they agree or were
declared ties, the winner's confirmed decode speed across runs (coefficient of variation), and the
confirmed speed-up over llama-cpp-python's untuned default with its interval.

    .venv/bin/python bench/repeatability.py [--runs 3] [-- extra autotune run arguments]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more arguments for autotune run (after --)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="autotune-repeat-"))
    profiles = []
    for index in range(args.runs):
        command = [sys.executable, "-m", "autotune", "run", "--budget", "2GB", "--latency", "50ms",
                   "--storage", f"sqlite:///{scratch / f'study{index}.sqlite3'}", "--out", str(scratch / f"run{index}"),
                   "--json", *args.extra]
        print(f"run {index + 1}: {' '.join(command[2:])}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-3000:])
            return 1
        profiles.append(json.loads(result.stdout))
    print(f"\n{'run':>3} {'winner':<58} {'verdict':<13} {'tok/s [95% CI]':>22} {'p95 ms':>7} {'speed-up vs untuned':>22}")
    speeds = []
    for index, p in enumerate(profiles, start=1):
        c = p["confirmation"]
        settings = " ".join(f"{k}={v}" for k, v in p["params"].items())
        s = c["speedup_over_untuned"]
        speedup = f"{s['value']:.2f} [{s['low']:.2f}, {s['high']:.2f}]" if s else "(is the default)"
        d = c["decode_tps"]
        speeds.append(d["value"])
        print(f"{index:>3} {settings[:58]:<58} {c['verdict']:<13} {d['value']:>7.1f} [{d['low']:.1f}, {d['high']:.1f}] "
              f"{c['itl_p95_ms']['value']:>7.1f} {speedup:>22}")
    winners = {json.dumps(p["params"], sort_keys=True) for p in profiles}
    cv = statistics.pstdev(speeds) / statistics.mean(speeds)
    print(f"\ndistinct winners: {len(winners)} of {len(profiles)} runs; verdicts: "
          f"{', '.join(p['confirmation']['verdict'] for p in profiles)}")
    print(f"winner's confirmed decode speed across runs: mean {statistics.mean(speeds):.1f} tok/s, CV {cv:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
