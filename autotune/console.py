"""Terminal output: live trial progress and result tables (rich, on stderr so stdout stays for --json)."""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table

from .budget import format_bytes
from .study import TrialRecord, quality_loss


def describe(record: TrialRecord) -> str:
    """``llamacpp Q4_0 n_threads=2 ...`` without the quantization repeated."""
    params = " ".join(f"{k}={v}" for k, v in record.params.items() if k not in ("quant", "precision"))
    precision = record.precision or record.params.get("quant") or record.params.get("precision") or ""
    return f"{record.backend} {precision} {params}".strip()


def _quality_text(record: TrialRecord) -> str:
    quality = record.quality_report
    if quality is not None and quality.kl_divergence is not None:
        kl = quality.kl_divergence
        return f"KL {kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}]"
    return f"{record.bits_per_weight:.2f} bpw (proxy)" if record.bits_per_weight else "-"


class ConsoleReporter:
    """Prints progress lines as trials finish."""

    def __init__(self, console: Console | None = None) -> None:
        # soft_wrap: long lines stay whole when stderr is a file or a pipe (logs, CI, tests).
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        self.console.print(f"  [dim]{message}[/dim]")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        head = f"[bold]trial {index}/{total}[/bold] #{record.number} {describe(record)}"
        m = record.measured
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
    for column in ("trial", "backend", "precision", "settings", "decode tok/s", "p95 ms", "TTFT ms", "peak memory", "quality loss"):
        table.add_column(column, justify="right" if column not in ("backend", "precision", "settings") else "left")
    for record in rows:
        m = record.measured
        if m is None:
            continue
        settings = " ".join(f"{k}={v}" for k, v in record.params.items() if k not in ("quant", "precision"))
        mark = " ★" if winner is not None and record.key == winner.key else ""
        table.add_row(f"#{record.number}{mark}", record.backend, record.precision or "", settings, f"{m.decode_tps:.1f}",
                      f"{m.worst_itl_p95_ms:.1f}", f"{m.ttft_ms:.0f}", format_bytes(m.peak_rss_bytes),
                      _quality_text(record))
    return table


def ordered_by_objective(rows: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Rows sorted by quality loss, then latency."""
    return sorted(rows, key=lambda r: (quality_loss(r), r.objectives()[1]))
