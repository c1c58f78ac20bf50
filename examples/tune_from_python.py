"""Tune from Python instead of the CLI: the same engine `autotune run` uses.

    .venv/bin/python examples/tune_from_python.py [MODEL]

Tunes SmolLM2-135M (or MODEL) with llama.cpp for a 600 MB / 20 ms budget and prints the winner.
"""

from __future__ import annotations

import sys

import autotune


def main() -> int:
    model = autotune.bundled_model(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m")
    result = autotune.tune(
        model,
        autotune.Budget.parse("600MB", "20ms"),
        autotune.Workload(prompt_tokens=128, gen_tokens=32, context=1024),
        autotune.TuneOptions(backends=("llamacpp",), trials=4, confirm_rounds=0, eval_tokens=512),
    )  # this machine's probe, the installed plugins, a reporter that keeps its messages
    profile = result.profile
    print(f"{profile.backend.name} {profile.artifact.precision} {profile.params}")
    print(f"{profile.measured.decode_tps:.1f} tok/s, p95 {profile.measured.worst_itl_p95_ms:.1f} ms, "
          f"peak {profile.measured.peak_rss_bytes / 2**20:.0f} MiB")
    print(profile.exports["llama-server"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
