"""``autotune run``: probe, tune, print the evidence, write the profile and its plot."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from autotune.budget import Budget, format_bytes
from autotune.cli.console import ConsoleReporter, candidates_table, describe, ordered_by_objective, results_table
from autotune.cli.plot import write_pareto_plot
from autotune.errors import InputError
from autotune.model.candidates import candidate_paths
from autotune.options import TuneOptions
from autotune.plugins.manager import get_plugin_manager
from autotune.probe.machine import probe
from autotune.report import report_path, write_report
from autotune.search.models import tune_models
from autotune.tuner import tune
from autotune.workload import Workload

MAX_STEM_NAME = 100
"""Characters of the model's name in the profile's file name."""


def run_command(args: argparse.Namespace, budget: Budget, workload: Workload, timeout_s: float) -> int:
    """Tune and write the profile; return the exit status."""
    model_paths = candidate_paths(args.model)  # several: each is tuned, then one is chosen (search/models.py)
    reporter = ConsoleReporter()
    console = reporter.console
    manager = get_plugin_manager()
    hardware = probe(manager)
    options = TuneOptions(
        backends=tuple(args.backend), trials=args.trials, timeout_s=timeout_s, storage=args.storage, objective=args.objective,
        seed=args.seed, measure_quality=not args.no_quality, eval_text=args.eval_text, eval_tokens=args.eval_tokens,
        confirm_rounds=args.confirm_rounds, strict=args.strict, patience=args.patience,
        screening=not args.no_screening, busy_share=args.busy_share, under_load=args.under_load,
    )
    stem = profile_stem(Path("+".join(p.name.removesuffix(".gguf") for p in model_paths)), hardware.fingerprint)
    profile_path, plot_path = prepare_out(args.out, stem)  # a bad --out fails now, not after the search
    # The header is printed by the reporter once the run passed its preflight (another machine's hardware refused).
    if len(model_paths) == 1:
        result = tune(model_paths[0], budget, workload, options, manager=manager, hardware=hardware, reporter=reporter)
    else:
        result = tune_models(model_paths, budget, workload, options, manager=manager, hardware=hardware,
                             reporter=reporter).chosen
    profile = result.profile
    measured = [r for r in result.records if r.status == "measured"]
    console.print()
    console.print(results_table(ordered_by_objective(result.front), "Feasible Pareto front (quality loss, p95, memory)",
                                result.winner))
    others = [r for r in ordered_by_objective(measured) if r.key not in {f.key for f in result.front}]
    if others:
        console.print(results_table(others[:8], "Other measured configurations"))
    if profile.quality and profile.quality.method != "kl-divergence":
        console.print("[yellow]note:[/yellow] quality loss was not measured; effective bits per weight is a proxy")
    confirmation = profile.confirmation
    if confirmation is not None:
        line = (f"confirmed over {confirmation.rounds} interleaved rounds: {confirmation.decode_tps.value:.1f} tok/s "
                f"[{confirmation.decode_tps.low:.1f}, {confirmation.decode_tps.high:.1f}], p95 "
                f"{confirmation.itl_p95_ms.value:.1f} ms [{confirmation.itl_p95_ms.low:.1f}, {confirmation.itl_p95_ms.high:.1f}]"
                f" — {confirmation.verdict}")
        if confirmation.speedup_over_untuned is not None:
            s = confirmation.speedup_over_untuned
            line += f"; {s.value:.2f}× [{s.low:.2f}, {s.high:.2f}] the untuned default's decode speed"
        if confirmation.versus_rule_of_thumb == "same":
            line += "; it is the rule of thumb itself (every physical core, runtime defaults)"
        elif confirmation.speedup_over_rule_of_thumb is not None:
            t = confirmation.speedup_over_rule_of_thumb
            line += (f"; {t.value:.2f}× [{t.low:.2f}, {t.high:.2f}] the rule of thumb's (every physical core) — "
                     f"{'a tie inside the noise' if confirmation.versus_rule_of_thumb == 'tie' else confirmation.versus_rule_of_thumb}")
        if confirmation.marginal:
            line += " — MARGINAL: the p95 interval straddles the budget (use --strict to require a margin)"
        console.print(line)
        for note in confirmation.notes:
            console.print(f"  [dim]{note}[/dim]")
        for warning in confirmation.load_warnings:  # never presented without saying so
            console.print(f"[yellow]warning:[/yellow] {warning}")
    profile_path.write_text(profile.to_json())
    plot_path = write_pareto_plot(plot_path, measured, result.front, result.winner, budget)
    m = profile.measured
    if profile.candidates:
        console.print(candidates_table(profile.candidates, f"Candidate models (chosen by {profile.model_choice})"))
        console.print(f"[bold green]chosen model:[/bold green] {Path(profile.model.path).name}")
    console.print(f"[bold green]chosen:[/bold green] {describe(result.winner)}  ({profile.artifact.label} written as "
                  f"{profile.artifact.bits_per_weight:.2f} bits per weight)")
    if confirmation is not None:  # the headline is the confirmed figure; the single search trial is only a trial
        c = confirmation
        console.print(f"  [bold]{c.decode_tps.value:.1f} tok/s [{c.decode_tps.low:.1f}, {c.decode_tps.high:.1f}], "
                      f"p95 {c.itl_p95_ms.value:.1f} ms [{c.itl_p95_ms.low:.1f}, {c.itl_p95_ms.high:.1f}][/bold] "
                      f"(confirmed over {c.rounds} rounds); peak {format_bytes(m.peak_rss_bytes)}")
        label = "  search trial: "
    else:
        label = "  "
    console.print(f"{label}{m.decode_tps:.1f} tok/s, p95 {m.itl_p95_ms:.1f} ms (at depth {m.deep_depth or 0}: "
                  f"{m.deep_itl_p95_ms or m.itl_p95_ms:.1f} ms), TTFT {m.ttft_ms:.0f} ms, peak {format_bytes(m.peak_rss_bytes)} "
                  f"(predicted {format_bytes(profile.predicted.memory_bytes)}, error {profile.predicted.memory_error:+.0%})")
    if m.served is not None:  # a served measurement: say what its percentiles rest on, and the goodput
        served = m.served
        accepted = f"; speculation accepted {served.acceptance:.0%} of drafts" if served.acceptance is not None else ""
        console.print(f"  served to {served.clients} clients: tok/s of all of them; TTFT p95 over {served.requests} "
                      f"requests, ITL over {served.itl_samples} gaps; goodput within the budget "
                      f"{served.goodput_tok_s(budget.ttft_ms, budget.latency_ms):.1f} of "
                      f"{served.throughput_tok_s:.1f} tok/s over all loads{accepted}")
    seconds = profile.study.get("seconds")
    if isinstance(seconds, dict) and seconds:
        console.print("  [dim]time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if v >= 0.05) + "[/dim]")
    console.print(f"profile: {profile_path}\nplot:    {plot_path}")
    try:  # the profile is written: a page that cannot be is one line, not a lost run
        console.print(f"report:  {write_report(profile, report_path(profile_path))}")
    except OSError as error:
        console.print(f"[yellow]warning:[/yellow] the report could not be written ({error.strerror or error}); "
                      f"`autotune report {profile_path}` writes it")
    if args.json:
        sys.stdout.write(profile.to_json() + "\n")
    return 0


def profile_stem(model_path: Path, fingerprint: str) -> str:
    """``<model>-<machine>``: the profile's, plot's and report's file name without suffix.

    At most ``MAX_STEM_NAME`` characters of the model's name: with the suffixes the names stay within the 255 a
    file system allows (a 245-character model name made the plot's name too long after the whole search).
    """
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{model_path.name.removesuffix('.gguf')[:MAX_STEM_NAME]}-{fingerprint[:8]}")


def prepare_out(folder: Path, stem: str) -> tuple[Path, Path]:
    """Create the ``--out`` folder and name the profile and plot in it, before anything is measured.

    A folder that cannot be made, or a folder already standing where a file will be written, would
    otherwise only fail after the whole search.
    """
    accepted = "name a folder for the profile (it is created if missing)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise InputError(f"--out {str(folder)!r} cannot be created: {reason}; {accepted}") from None
    profile_path, plot_path = folder / f"{stem}.json", folder / f"{stem}.pareto.png"
    for path in (profile_path, plot_path, report_path(profile_path)):
        if path.is_dir():
            raise InputError(f"--out {str(folder)!r} holds a folder named {path.name!r} where the profile goes; "
                             "remove it or choose another --out")
    return profile_path, plot_path
