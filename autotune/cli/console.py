"""Terminal output: live trial progress and result tables (rich, on stderr so stdout stays for --json)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autotune.budget import Budget, format_bytes
from autotune.hardware import Hardware
from autotune.profile.schema import CandidateModel
from autotune.record import TrialRecord, quality_loss
from autotune.workload import Workload


def settings(record: TrialRecord) -> str:
    """The configuration as its backend describes it (``Q4_0 t=2 b=512/512 fa=off ...``), or its raw parameters.

    The backend's label names the requested type; what was written instead (a fallback, or the source's own
    mix) follows it from the record's precision: ``Q4_K_M t=2 ... (90/236 tensors fell back to Q5_0/Q8_0)``.
    """
    text = record.label or " ".join(f"{k}={v}" for k, v in record.params.items())
    precision = record.precision or ""
    written = precision[len(precision.split(" (", 1)[0]):].strip()
    return f"{text} {written}" if written and written not in text else text


def describe(record: TrialRecord) -> str:
    """``llamacpp Q4_0 t=2 ...``."""
    return f"{record.backend} {settings(record)}"


def _quality_text(record: TrialRecord) -> str:
    quality = record.quality
    if quality is not None and quality.kl_divergence is not None:
        kl = quality.kl_divergence
        return f"KL {kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}]"
    return f"{record.bits_per_weight:.2f} bpw (proxy)" if record.bits_per_weight else "-"


PIPE_WIDTH = 200
"""The width tables are laid out for in a file or a pipe, where rich would assume 80 columns: wide enough for every
column whole (a backend's configuration label included), as ``less -S``, ``grep`` or a log would want it."""


def output_console(*, stderr: bool) -> Console:
    """A console on stderr or stdout: the terminal's width on a terminal, ``PIPE_WIDTH`` in a file or a pipe.

    soft_wrap: long lines stay whole in a file or a pipe (logs, CI, tests), and tables there keep every column whole.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stream.isatty() else PIPE_WIDTH)


class ConsoleReporter:
    """Prints progress lines as trials finish."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or output_console(stderr=True)

    def begin(self, model_path: Path, hardware: Hardware, budget: Budget, workload: Workload) -> None:
        self.console.print(f"[bold]autotune[/bold] {model_path.name} on {hardware.cpu.brand or hardware.cpu.architecture} "
                           f"({hardware.cpu.usable_cores} usable cores, {format_bytes(hardware.memory.limit_bytes)})")
        self.console.print(f"budget: {budget.describe()}")
        self.console.print(f"workload: {workload.describe()}", markup=False)  # a prompts path may hold [brackets]

    def info(self, message: str) -> None:
        self.console.print(f"  [dim]{message}[/dim]")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        counter = f"trial {index}/{total}" if record.spent else "skipped"
        head = f"[bold]{counter}[/bold] #{record.number} {describe(record)}"
        m = record.measurement
        if record.status == "measured" and m is not None:
            verdict = "[green]fits[/green]" if record.feasible else "[red]over budget: " + ", ".join(
                k for k, v in record.violations.items() if v > 0) + "[/red]"
            body = (f"{m.decode_tps:.1f} tok/s, p95 {m.worst_itl_p95_ms:.1f} ms, TTFT {m.ttft_ms:.0f} ms, "
                    f"{format_bytes(m.peak_rss_bytes)}, {_quality_text(record)} → {verdict}")
        else:
            body = f"[yellow]{record.status}[/yellow]: {record.reason}"
        self.console.print(f"{head}\n    {body}")
        if best is not None:
            self.console.print(f"    [dim]best so far: #{best.number} {describe(best)}[/dim]")


def results_table(rows: Sequence[TrialRecord], title: str, winner: TrialRecord | None = None) -> Table:
    """A table of configurations with their measured figures."""
    table = Table(title=title, title_justify="left")
    for column in ("trial", "backend", "configuration", "decode tok/s", "p95 ms", "TTFT ms", "peak memory", "quality loss"):
        table.add_column(column, justify="left" if column in ("backend", "configuration") else "right",
                         no_wrap=column != "configuration")
    for record in rows:
        m = record.measurement
        if m is None:
            continue
        mark = " ★" if winner is not None and record.key == winner.key else ""
        table.add_row(f"#{record.number}{mark}", record.backend, settings(record), f"{m.decode_tps:.1f}",
                      f"{m.worst_itl_p95_ms:.1f}", f"{m.ttft_ms:.0f}", format_bytes(m.peak_rss_bytes),
                      _quality_text(record))
    return table


def candidates_table(candidates: Sequence[CandidateModel], title: str) -> Table:
    """Each candidate model's best configuration within the budget (or why none fits), the chosen one starred."""
    table = Table(title=title, title_justify="left")
    for column in ("model", "backend", "configuration", "decode tok/s", "p95 ms", "peak memory", "bits per byte", "KL",
                   "why not"):
        table.add_column(column, justify="left" if column in ("model", "backend", "configuration", "why not")
                         else "right", no_wrap=column not in ("configuration", "why not"))
    for candidate in candidates:
        name = Path(candidate.model.path).name + (" ★" if candidate.chosen else "")
        best = candidate.best
        if best is None:
            table.add_row(name, "-", "-", "-", "-", "-", "-", "-", candidate.reason or "")
            continue
        bpb, kl = best.bits_per_byte, best.kl_divergence
        table.add_row(name, best.backend, best.configuration or best.precision, f"{best.decode_tps:.1f}",
                      f"{best.itl_p95_ms:.1f}", format_bytes(best.peak_rss_bytes) if best.peak_rss_bytes else "-",
                      f"{bpb.value:.3f} [{bpb.low:.3f}, {bpb.high:.3f}]" if bpb else "-",
                      f"{kl.value:.4f}" if kl else "-", candidate.reason or "")
    return table


def ordered_by_objective(rows: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Rows sorted by quality loss, then latency."""
    return sorted(rows, key=lambda r: (quality_loss(r), r.objectives()[1]))
