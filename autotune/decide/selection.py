"""Choosing among feasible configurations: the Pareto front and the user's objective."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from autotune.options import OBJECTIVES
from autotune.record import TrialRecord, quality_loss

RUN_TO_RUN_NOISE = 0.10
"""Separate runs of one configuration differ by ±5–10% on the 2-core guests measured here: a smaller
difference between two configurations is not evidence that one is faster."""


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
    qa, qb = a.quality, b.quality
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


def improves(new: TrialRecord | None, old: TrialRecord | None, objective: str) -> bool:
    """Is ``new`` better than ``old`` for ``objective`` by more than the noise (a real step, not a reshuffle)?"""
    if new is None or new.key == (old.key if old else None):
        return False
    if old is None:
        return True
    (new_loss, new_p95, new_mem), (old_loss, old_p95, old_mem) = new.objectives(), old.objectives()
    if objective == "memory":
        return new_mem < old_mem * (1 - RUN_TO_RUN_NOISE / 2)  # resident memory varies far less than speed
    if objective == "quality" and not _quality_tied(new, old):
        return new_loss < old_loss
    return new_p95 < old_p95 * (1 - RUN_TO_RUN_NOISE)


def best_feasible(records: Iterable[TrialRecord], objective: str) -> TrialRecord | None:
    """The winner among the feasible records for ``objective``, or None when none is feasible."""
    feasible = [r for r in records if r.feasible]
    return choose(pareto_front(feasible), objective) if feasible else None


class Progress:
    """The best configuration so far, and when the search has stopped finding better ones.

    The search stops once ``patience`` trials in a row (after the starting points) could not beat the
    best by more than the noise: more trials would only re-measure the noise.
    """

    def __init__(self, objective: str, patience: int, starting_points: int, records: Iterable[TrialRecord]) -> None:
        self.objective, self.patience, self.starting_points = objective, patience, starting_points
        self.best: TrialRecord | None = None
        self.stale = 0
        # A resumed study is replayed in trial order, so its staleness carries over exactly as it was.
        done = sorted(records, key=lambda r: r.number)
        for index, record in enumerate(done):
            if record.spent:
                self.update(done[:index + 1])

    def update(self, records: Iterable[TrialRecord]) -> None:
        """Account for one more trial that reached measurement."""
        current = best_feasible(records, self.objective)
        if improves(current, self.best, self.objective):
            self.best, self.stale = current, 0
        else:
            self.stale += 1

    def done(self, trials: int) -> str | None:
        """Why the search should stop now (said to the user), or None to go on; ``trials`` counts this run's."""
        resumed = self.stale >= self.patience and trials == 0  # an earlier run already found nothing better
        if self.best is None or not self.patience or self.stale < self.patience or \
                (trials < self.starting_points and not resumed):
            return None
        if trials == 0:
            return (f"nothing new to measure: the study's last {self.stale} trials could not beat #{self.best.number} "
                    f"beyond the ±{RUN_TO_RUN_NOISE:.0%} run-to-run noise (--patience 0 searches on)")
        return (f"stopped after {trials} trial(s): the last {self.stale} could not beat #{self.best.number} "
                f"beyond the ±{RUN_TO_RUN_NOISE:.0%} run-to-run noise")
