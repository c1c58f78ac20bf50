"""Choosing among feasible configurations: the Pareto front and the user's objective."""

from __future__ import annotations

from collections.abc import Sequence

from .study import TrialRecord, quality_loss

OBJECTIVES = ("quality", "latency", "memory")


def pareto_front(candidates: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Configurations no other one beats on every objective (quality loss, p95 latency, memory)."""
    points = [(record, record.objectives()) for record in candidates]
    front = []
    for record, mine in points:
        dominated = any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and any(o < m for o, m in zip(other, mine, strict=True))
            for _, other in points
        )
        if not dominated:
            front.append(record)
    return sorted(front, key=lambda r: r.objectives())


def _quality_tied(a: TrialRecord, b: TrialRecord) -> bool:
    """Two quality losses are indistinguishable when their intervals overlap (or both are unmeasured and equal)."""
    qa, qb = a.quality_report, b.quality_report
    if qa and qb and qa.kl_divergence and qb.kl_divergence:
        return qa.kl_divergence.low <= qb.kl_divergence.high and qb.kl_divergence.low <= qa.kl_divergence.high
    return quality_loss(a) == quality_loss(b)


def choose(front: Sequence[TrialRecord], objective: str) -> TrialRecord:
    """The winner on the feasible front for ``objective``.

    - ``quality``: lowest quality loss; among configurations whose loss is statistically
      indistinguishable from the lowest, the lowest p95 latency (then memory).
    - ``latency``: lowest p95 latency, then quality loss.
    - ``memory``: lowest peak memory, then quality loss.
    """
    if not front:
        raise ValueError("no feasible configuration to choose from")
    if objective == "quality":
        best = min(front, key=lambda r: r.objectives())
        tied = [r for r in front if _quality_tied(r, best)]
        return min(tied, key=lambda r: (r.objectives()[1], r.objectives()[2]))
    if objective == "latency":
        return min(front, key=lambda r: (r.objectives()[1], r.objectives()[0]))
    if objective == "memory":
        return min(front, key=lambda r: (r.objectives()[2], r.objectives()[0]))
    raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")


def best_per_backend(feasible: Sequence[TrialRecord], objective: str) -> dict[str, TrialRecord]:
    """The best feasible configuration of each backend, by the same objective."""
    by_backend: dict[str, list[TrialRecord]] = {}
    for record in feasible:
        by_backend.setdefault(record.backend, []).append(record)
    return {name: choose(pareto_front(group), objective) for name, group in by_backend.items()}
