"""The Pareto plot: quality loss against p95 latency, marker size for memory, budget lines drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autotune.budget import Budget, format_bytes
from autotune.record import TrialRecord


def write_pareto_plot(path: Path, measured: Sequence[TrialRecord], front: Sequence[TrialRecord],
                      winner: TrialRecord, budget: Budget) -> Path:
    """Write a PNG of every measured configuration, the feasible front highlighted."""
    # A bare Figure renders with the Agg canvas on savefig: no pyplot, no global backend switched.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), dpi=110)
    axes = figure.subplots()
    front_keys = {r.key for r in front}
    memory_scale = max(r.objectives()[2] for r in measured)
    for record in measured:
        quality, latency, memory = record.objectives()
        on_front = record.key in front_keys
        axes.scatter(latency, quality, s=40 + 360 * memory / memory_scale, alpha=0.85 if on_front else 0.35,
                     c="tab:blue" if record.feasible else "tab:gray", edgecolors="black" if on_front else "none")
        if on_front:
            axes.annotate(f"{record.backend} {record.precision}", (latency, quality), fontsize=7,
                          xytext=(4, 4), textcoords="offset points")
    w_quality, w_latency, _ = winner.objectives()
    axes.scatter([w_latency], [w_quality], marker="*", s=300, c="tab:red", label="chosen", zorder=5)
    axes.axvline(budget.latency_ms, color="tab:red", linestyle="--", linewidth=1, label=f"latency budget {budget.latency_ms:g} ms")
    if budget.max_quality_loss is not None:
        axes.axhline(budget.max_quality_loss, color="tab:orange", linestyle="--", linewidth=1, label="quality budget")
    proxy = winner.quality is None or winner.quality.kl_divergence is None
    axes.set_ylabel("quality loss (16 − bits per weight, proxy)" if proxy else "quality loss (mean KL divergence)")
    axes.set_xlabel("p95 inter-token latency (ms)")
    axes.set_title(f"Measured configurations (marker size: peak memory; memory budget {format_bytes(budget.memory_bytes)})",
                   fontsize=10)
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
