"""Which model and quantization autotune picks on a ladder of memory budgets, against the field's rule of thumb.

The rule of thumb of the field's guidance: the largest model that fits at Q4_0. For each memory budget (largest
first, so the later runs reuse the store's figures) ``autotune.search.models.tune_models`` tunes every candidate
model with the llama.cpp backend and chooses one (lowest bits per byte of the evaluation text within every budget;
see ``autotune.decide.model_choice``). The rule of thumb's pick is the model with the most parameters whose Q4_0
starting point (every usable core, llama-cpp-python's defaults: the configuration every run measures first) was
measured within the same budgets. Printed per budget: each pick's model, precision, bits per byte with its interval
and decode speed (autotune's from its confirmation rounds when ``--confirm-rounds`` > 0, otherwise its search
trial; the rule of thumb's from its search trial).

    .venv/bin/python bench/model_choice.py [--model gemma3-270m --model smollm2-135m] \\
        [--budgets 250MB,425MB,1GB] [--latency 50ms] [--trials 2] [--confirm-rounds 0] [--eval-tokens 512] \\
        [--context 2048] [--prompt-tokens 128] [--gen-tokens 64] [--depth N]

Runtime: each candidate's search is ``--trials`` measurements plus one quality score per quantization (tens of
seconds each for these models on 2 cores); the later, smaller budgets mostly reuse stored figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from autotune import SilentReporter, TuneOptions, Workload
from autotune.budget import Budget, format_bytes
from autotune.decide.judgment import judged
from autotune.errors import NothingFits
from autotune.model.candidates import candidate_paths
from autotune.numbers import parse_duration, parse_size
from autotune.plugins.manager import get_plugin_manager
from autotune.probe.machine import probe
from autotune.profile.schema import Interval
from autotune.record import TrialRecord
from autotune.search.models import tune_models

BACKEND = "llamacpp"
RULE_QUANT = "Q4_0"


def interval(value: Interval | None) -> str:
    return f"{value.value:.3f} [{value.low:.3f}, {value.high:.3f}]" if value is not None else "-"


def bits_per_byte(record: TrialRecord) -> Interval | None:
    return record.quality.bits_per_byte if record.quality is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", action="append", help="a candidate (repeatable; default: gemma3-270m and "
                        "smollm2-135m)")
    parser.add_argument("--budgets", default="250MB,425MB,1GB", help="memory budgets, comma-separated")
    parser.add_argument("--latency", default="50ms", help="p95 inter-token latency budget for every rung")
    parser.add_argument("--trials", type=int, default=2, help="configurations measured per model and budget")
    parser.add_argument("--confirm-rounds", type=int, default=0, help="0, or 5 and more (slower, firmer speeds)")
    parser.add_argument("--eval-tokens", type=int, default=512, help="tokens of the evaluation text scored")
    parser.add_argument("--context", type=int, default=2048, help="the workload's context (default 2048)")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompt tokens per timed run (default 128)")
    parser.add_argument("--gen-tokens", type=int, default=64, help="generated tokens per timed run (default 64)")
    parser.add_argument("--depth", type=int, default=None, help="KV depth also measured (default: near the end; 0: "
                        "start only)")
    args = parser.parse_args(argv)
    paths = candidate_paths(args.model or ["gemma3-270m", "smollm2-135m"])
    manager = get_plugin_manager()
    hardware = probe(manager)
    backend = manager.backend(BACKEND)
    workload = Workload(prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, context=args.context,
                        depth=args.depth)
    sources = {path: backend.inspect(path) for path in paths}
    rule_params = {}
    for path, source in sources.items():
        starts = [p for p in backend.starting_points(source, hardware, workload) if p.get("quant") == RULE_QUANT]
        if starts:
            rule_params[path] = starts[0]
    budgets = sorted((parse_size(text.strip()) for text in args.budgets.split(",")), reverse=True)
    latency_ms = parse_duration(args.latency) * 1000
    options = TuneOptions(backends=(BACKEND,), trials=args.trials, confirm_rounds=args.confirm_rounds,
                          eval_tokens=args.eval_tokens, patience=0)
    print(f"machine: {hardware.cpu.brand} ({hardware.cpu.architecture}), {hardware.cpu.usable_cores} usable cores")
    print(f"candidates: {', '.join(f'{p.name} ({sources[p].parameters or 0:,} parameters)' for p in paths)}")
    print(f"latency budget {args.latency} p95; {args.trials} trials per model and budget; "
          f"{args.confirm_rounds} confirmation rounds; bits per byte on {args.eval_tokens} tokens of the bundled text")
    seen: dict[Path, dict[str, TrialRecord]] = {path: {} for path in paths}
    rows = []
    for memory in budgets:
        budget = Budget(memory_bytes=memory, latency_ms=latency_ms)
        print(f"\n== {format_bytes(memory)} ==", flush=True)
        try:
            choice = tune_models(paths, budget, workload, options, manager=manager, hardware=hardware,
                                 reporter=SilentReporter())
        except NothingFits as error:
            rows.append((memory, "nothing fits", "", "-", "-", *rule_of_thumb(paths, sources, seen, rule_params, budget)))
            print(f"  nothing fits: {error}")
            continue
        for path, result in choice.results.items():
            if result is not None:
                seen[path].update({r.key: r for r in result.records if r.status == "measured"})
        for c in choice.candidates:
            best = c.best
            shown = (f"{best.configuration or best.precision}: {best.decode_tps:.1f} tok/s, "
                     f"{interval(best.bits_per_byte)} bits/byte") if best else f"none fits: {c.reason}"
            print(f"  {'*' if c.chosen else ' '} {Path(c.model.path).name}: {shown}")
        profile = choice.chosen.profile
        chosen = next(c for c in choice.candidates if c.chosen)
        assert chosen.best is not None
        rows.append((memory, Path(profile.model.path).name, profile.artifact.label, interval(chosen.best.bits_per_byte),
                     f"{chosen.best.decode_tps:.1f}", *rule_of_thumb(paths, sources, seen, rule_params, budget)))
    print("\n| memory budget | autotune picks | precision | bits per byte | tok/s | largest model at Q4_0 | "
          "bits per byte | tok/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for memory, *cells in rows:
        print(f"| {format_bytes(memory)} | " + " | ".join(cells) + " |")
    return 0


def rule_of_thumb(paths: Sequence[Path], sources: dict, seen: dict[Path, dict[str, TrialRecord]],
                  rule_params: dict, budget: Budget) -> tuple[str, str, str]:
    """The largest model whose measured Q4_0 starting point is within ``budget``: name, bits per byte, tok/s."""
    fitting, missed = [], []
    for path in paths:
        record = next((r for r in seen[path].values() if r.params == rule_params.get(path)), None)
        if record is None:
            missed.append(f"{path.name} Q4_0 not measured")
            continue
        verdict = judged(record, budget)
        if verdict.feasible:
            fitting.append((sources[path].parameters or 0, path, record))
        else:
            over = ", ".join(name for name, excess in verdict.violations.items() if excess > 0)
            missed.append(f"{path.name} Q4_0 over {over}")
    if not fitting:
        return ("none fits: " + "; ".join(missed), "-", "-")
    _, path, record = max(fitting, key=lambda item: item[0])
    assert record.measurement is not None
    return (path.name, interval(bits_per_byte(record)), f"{record.measurement.decode_tps:.1f}")


if __name__ == "__main__":
    sys.exit(main())
