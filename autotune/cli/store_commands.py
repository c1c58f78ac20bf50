"""``autotune answer`` and ``autotune store``: the measurement store in the terminal and as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from autotune.answer import answer_from_store, stored_models
from autotune.budget import Budget, format_bytes
from autotune.cli.console import describe, ordered_by_objective, output_console, results_table
from autotune.model.bundled import model_path as resolve_model
from autotune.model.source import cached_content_hash
from autotune.options import TuneOptions
from autotune.plugins.manager import get_plugin_manager
from autotune.probe.machine import probe_here
from autotune.record import figures_of
from autotune.search.sources import select_backends
from autotune.store.measurements import runtimes_of
from autotune.workload import Workload


def answer_command(args: argparse.Namespace, budget: Budget, workload: Workload) -> int:
    """Print what ``run`` would pick for this budget from stored figures; return the exit status."""
    manager = get_plugin_manager()
    hardware = probe_here(manager, measure_bandwidth=False)
    model_path = resolve_model(args.model)
    options = TuneOptions(backends=tuple(args.backend), storage=args.storage, objective=args.objective,
                          measure_quality=not args.no_quality, eval_text=args.eval_text, eval_tokens=args.eval_tokens)
    answer = answer_from_store(model_path, budget, workload, options, manager, hardware)
    if args.json:
        sys.stdout.write(json.dumps(answer.to_json(), indent=2) + "\n")
        return 0
    console = output_console(stderr=False)
    summary = answer.to_json()
    console.print(results_table(ordered_by_objective(answer.front), "Feasible Pareto front from the store",
                                answer.winner))
    console.print(f"[bold green]would pick:[/bold green] {describe(answer.winner)}")
    hosts = ", ".join(summary["hosts"])
    console.print(f"  from {summary['measurements']} stored measurement(s) of {model_path.name} on this machine "
                  f"({hosts}), measured {_age(summary['newest_s'])} to {_age(summary['oldest_s'])} ago; nothing "
                  "measured now, not confirmed: `autotune run` with the same options confirms it and writes the profile")
    if answer.stale:
        console.print(f"  [yellow]{answer.stale} stored figure(s) of another runtime version were left aside[/yellow]")
    return 0


def store_command(args: argparse.Namespace) -> int:
    """List what the store holds per machine and model; return the exit status."""
    manager = get_plugin_manager()
    installed = runtimes_of(select_backends(manager, ()))
    fingerprint = None if args.all_machines else probe_here(manager, measure_bandwidth=False).fingerprint
    sha = cached_content_hash(resolve_model(args.model)) if args.model else None
    models = stored_models(args.storage, installed, fingerprint=fingerprint, model_sha256=sha)
    if args.json:
        sys.stdout.write(json.dumps([m.to_json() for m in models], indent=2, default=str) + "\n")
        return 0
    console = output_console(stderr=False)
    if not models:
        where = "any machine" if args.all_machines else "this machine (--all-machines for every one)"
        console.print(f"the store holds no measurements for {where}; `autotune run` fills it")
        return 0
    for model in models:
        runtimes = "; ".join(f"{b} {', '.join(sorted(v))}" for b, v in sorted(model.runtimes.items()))
        console.print(f"[bold]{model.model_name}[/bold] ({model.model_sha256[:10]}) on machine {model.fingerprint[:8]}: "
                      f"{len(model.measured)} measured, {model.failed} failed, {model.stale} stale "
                      f"(runtimes: {runtimes}); newest {_age(model.to_json()['newest_age_s'])} ago")
        for backend, best in sorted(model.fastest_per_backend().items()):
            shown = figures_of(best)
            console.print(f"  best {backend}: {describe(best)} — {shown['decode_tps']} tok/s, p95 {shown['itl_p95_ms']} "
                          f"ms, peak {format_bytes(shown['peak_rss_bytes'])}")
        front = model.to_json()["front"]
        console.print(f"  front (quality loss, p95, memory): {len(front)} configuration(s)")
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
