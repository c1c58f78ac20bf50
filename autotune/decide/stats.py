"""Noise-aware decisions: confidence intervals, paired comparisons and budget checks.

On a small machine separate runs of one configuration differ by 5-10 % in decode speed, far more
than the spread inside one run. The tuner therefore re-measures its finalists in interleaved rounds
(A B C, B C A, C A B, ...: one fresh worker per configuration per round) and compares them *round by
round*: whatever slowed the machine down during a round (a busy neighbour, a lower clock) slowed
every configuration of that round alike, so the per-round ratio cancels it.

A difference inside the noise is reported as a tie, never as a win. Every function here is
deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autotune.profile.schema import Interval

Statistic = Callable[..., Any]
"""A numpy reduction that accepts ``axis=`` (``np.median``, ``np.mean``, ...)."""

Verdict = Literal["a", "b", "tie"]
BudgetStatus = Literal["within", "marginal", "over"]

__all__ = [
    "BudgetStatus", "Comparison", "Interval", "Ranked", "Verdict", "bootstrap_interval", "budget_status",
    "can_still_win", "compare", "interval_from_replicates", "paired_ratio", "rank_finalists", "sign_test",
]


def _as_samples(samples: Sequence[float], what: str) -> np.ndarray:
    values = np.asarray(samples, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what} must be a non-empty sequence of numbers")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains a non-finite value: {values.tolist()}")
    return values


def _paired(a_rounds: Sequence[float], b_rounds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = _as_samples(a_rounds, "a_rounds")
    b = _as_samples(b_rounds, "b_rounds")
    if a.size != b.size:
        raise ValueError(f"paired rounds differ in length ({a.size} vs {b.size}); round i of each must be one round")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("paired ratios need positive values (speeds or latencies)")
    return a, b


def interval_from_replicates(value: float, replicates: np.ndarray, confidence: float) -> Interval:
    """A percentile interval from bootstrap replicates, widened if needed to contain ``value``.

    A percentile interval can miss its point estimate when the bootstrap distribution is very
    skewed (few, lopsided samples); the profile promises ``low <= value <= high``, so the interval
    is stretched to the point estimate in that case, which only makes it more cautious.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(value=float(value), low=float(min(low, value)), high=float(max(high, value)))


def bootstrap_interval(
    samples: Sequence[float],
    statistic: Statistic = np.median,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """``statistic`` of ``samples`` with a percentile-bootstrap confidence interval.

    ``statistic`` must accept ``axis=`` (numpy reductions do): all resamples are evaluated in one
    vectorised call. A single sample gives a zero-width interval (nothing is known about its noise).
    """
    values = _as_samples(samples, "samples")
    rng = np.random.default_rng(seed)
    resampled = values[rng.integers(0, values.size, size=(resamples, values.size))]
    replicates = np.asarray(statistic(resampled, axis=1), dtype=float)
    return interval_from_replicates(float(statistic(values)), replicates, confidence)


def paired_ratio(
    a_rounds: Sequence[float],
    b_rounds: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Median of the per-round ratios ``a_i / b_i``, with a bootstrap interval over rounds.

    Round ``i`` of ``a`` and of ``b`` ran under the same conditions, so their ratio cancels what
    the machine was doing during that round. The *median* of the ratios is used rather than their
    geometric mean because one disturbed round (a 3x slower run while something else held the
    CPU) shifts a geometric mean of 10 rounds by 3^(1/10) = 1.12, more than the 5-10 % effects
    being judged, but moves the median by at most one rank. Resampling whole rounds keeps pairs
    together.
    """
    a, b = _paired(a_rounds, b_rounds)
    return bootstrap_interval(a / b, np.median, confidence, resamples, seed)


def sign_test(a_rounds: Sequence[float], b_rounds: Sequence[float]) -> float:
    """Exact two-sided binomial p-value of "a_i > b_i as often as a_i < b_i".

    Rounds where ``a_i == b_i`` carry no sign and are dropped (the usual convention); with no
    signed rounds the p-value is 1. Distribution-free: an outlier round counts as one vote.
    """
    a, b = _paired(a_rounds, b_rounds)
    return _sign_p(int(np.sum(a > b)), int(np.sum(a < b)))


def _sign_p(greater: int, smaller: int) -> float:
    """The sign test's two-sided p-value from the count of rounds each side won."""
    signed = greater + smaller
    if signed == 0:
        return 1.0
    extreme = min(greater, smaller)
    tail = sum(math.comb(signed, k) for k in range(extreme + 1)) / 2**signed
    return float(min(1.0, 2 * tail))


def _sign_agrees(winner_rounds: int, loser_rounds: int, rounds: int, alpha: float) -> tuple[bool, str]:
    """Whether the sign rule of ``compare`` lets a side that won ``winner_rounds`` of ``rounds`` win, and the rule."""
    if 2 / 2**rounds <= alpha:  # the smallest two-sided p-value n rounds can give is attainable
        sign_p = _sign_p(winner_rounds, loser_rounds)
        return (winner_rounds > rounds - winner_rounds and sign_p <= alpha,
                f"sign test p = {sign_p:.3g} (needs <= {alpha:.3g})")
    return (winner_rounds == rounds,
            f"{winner_rounds} of {rounds} rounds (with {rounds} rounds every round must agree)")


@dataclass(frozen=True)
class Comparison:
    """The verdict on two configurations measured in the same interleaved rounds.

    ``ratio`` is the median of per-round ``a / b`` ratios with its interval (for speeds, above 1
    means a is faster; for latencies, below 1 means a is faster). ``sign_p`` is the sign test's
    p-value; ``a_better`` / ``b_better`` count the rounds each side won.
    """

    verdict: Verdict
    ratio: Interval
    sign_p: float
    rounds: int
    a_better: int
    b_better: int
    higher_is_better: bool
    reason: str


def compare(
    a_rounds: Sequence[float],
    b_rounds: Sequence[float],
    higher_is_better: bool = True,
    confidence: float = 0.95,
    min_effect: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Decide whether ``a`` or ``b`` is better, or whether they are tied within the noise.

    The rule (a strict winner needs both tests, since a false winner costs more than a false tie —
    a tie lets the tuner fall back on memory and quality):

    1. The bootstrap interval of the per-round ratio must lie entirely beyond ``1 + min_effect``
       in the winner's favour (``min_effect=0.02``: at least 2 % better; the threshold is applied
       symmetrically on a log scale, so ``b`` must reach ``a / b < 1 / 1.02``).
    2. The sign test must agree: the winner won the majority of rounds, and its p-value is at most
       ``1 - confidence`` — *when that p-value is attainable*. With ``n`` rounds the smallest
       two-sided p-value is ``2 / 2**n``; for 5 rounds that is 0.0625 > 0.05, so no outcome could
       pass. Rather than silently dropping the test for short confirmations, fewer rounds demand
       its most extreme outcome: the winner must win *every* round. (With 5 rounds the 95 %
       percentile interval of a median spans the smallest to the largest ratio anyway, so rule 1
       already implies this; the explicit rule keeps the meaning for other confidence levels.)

    Medians and signs make the verdict robust to one outlier round: with 10 rounds, one round
    where the winner ran 3x slower leaves the median ratio almost unchanged and the sign test at
    9 of 10 (p = 0.021).
    """
    a, b = _paired(a_rounds, b_rounds)
    ratio = paired_ratio(a.tolist(), b.tolist(), confidence, resamples, seed)
    sign_p = sign_test(a.tolist(), b.tolist())
    a_greater, b_greater = int(np.sum(a > b)), int(np.sum(a < b))
    a_better, b_better = (a_greater, b_greater) if higher_is_better else (b_greater, a_greater)
    rounds = int(a.size)
    alpha = 1 - confidence
    edge = 1 + min_effect

    if ratio.low > edge:
        candidate: Verdict = "a" if higher_is_better else "b"
    elif ratio.high < 1 / edge:
        candidate = "b" if higher_is_better else "a"
    else:
        band = "1" if min_effect == 0 else f"the no-difference band [{1 / edge:.3f}, {edge:.3f}]"
        return Comparison("tie", ratio, sign_p, rounds, a_better, b_better, higher_is_better,
                          f"the {confidence:.0%} interval of a/b [{ratio.low:.3f}, {ratio.high:.3f}] "
                          f"does not exclude {band}")

    winner_rounds, loser_rounds = (a_better, b_better) if candidate == "a" else (b_better, a_better)
    agrees, sign_rule = _sign_agrees(winner_rounds, loser_rounds, rounds, alpha)
    if not agrees:
        return Comparison("tie", ratio, sign_p, rounds, a_better, b_better, higher_is_better,
                          f"the interval favours {candidate} but the sign test does not: {sign_rule}")
    return Comparison(candidate, ratio, sign_p, rounds, a_better, b_better, higher_is_better,
                      f"{candidate} is better: a/b in [{ratio.low:.3f}, {ratio.high:.3f}], {sign_rule}")


def can_still_win(
    a_rounds: Sequence[float],
    b_rounds: Sequence[float],
    total_rounds: int,
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> bool:
    """Whether ``compare`` over ``total_rounds`` rounds could still find ``a`` better than ``b``.

    The rounds measured so far are ``a_rounds`` and ``b_rounds``; the best case for ``a`` is that it wins
    every round still to come. ``compare`` needs its sign rule to agree (every round with up to 5 rounds, a
    majority with a small enough sign-test p-value beyond), and that depends only on who won which round: when
    even the best case fails it, the verdict "a" is out of reach whatever the remaining rounds measure. (The
    interval rule is not checked: it can only refuse more, so False here is certain, True only possible.)
    """
    a, b = _paired(a_rounds, b_rounds)
    if total_rounds < a.size:
        raise ValueError(f"total_rounds ({total_rounds}) is below the {a.size} rounds already measured")
    a_greater, b_greater = int(np.sum(a > b)), int(np.sum(a < b))
    wins, losses = (a_greater, b_greater) if higher_is_better else (b_greater, a_greater)
    return _sign_agrees(wins + total_rounds - int(a.size), losses, total_rounds, 1 - confidence)[0]


@dataclass(frozen=True)
class Ranked:
    """One finalist's place: its median with interval, and whether the best beats it.

    ``tied_with_best`` is true for the best itself and for every finalist the best does not beat
    strictly (``comparison`` is ``compare(best, this)``; None for the best).
    """

    name: str
    median: Interval
    tied_with_best: bool
    comparison: Comparison | None


def rank_finalists(
    rounds: dict[str, Sequence[float]],
    higher_is_better: bool = True,
    confidence: float = 0.95,
    min_effect: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> list[Ranked]:
    """Order finalists best first by median, and say which are statistically tied with the best.

    ``rounds`` maps a finalist's name to its measurements, one per interleaved round, in round
    order (all the same length). Each other finalist is compared with the best by ``compare``.
    """
    if not rounds:
        raise ValueError("rank_finalists needs at least one finalist")
    lengths = {name: len(values) for name, values in rounds.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every finalist needs one value per round; got {lengths}")
    medians = {name: bootstrap_interval(values, np.median, confidence, resamples, seed)
               for name, values in rounds.items()}
    order = sorted(rounds, key=lambda name: medians[name].value, reverse=higher_is_better)
    best = order[0]
    ranked = [Ranked(best, medians[best], True, None)]
    for name in order[1:]:
        comparison = compare(rounds[best], rounds[name], higher_is_better, confidence, min_effect, resamples, seed)
        ranked.append(Ranked(name, medians[name], comparison.verdict != "a", comparison))
    return ranked


def budget_status(
    samples: Sequence[float],
    budget: float,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> BudgetStatus:
    """Whether latency samples (lower is better; e.g. one p95 per round) meet ``budget``.

    ``within`` when the upper end of the median's interval is at most the budget, ``over`` when
    its lower end exceeds it, ``marginal`` when the interval straddles the budget (the profile
    says so rather than pretending to know).
    """
    interval = bootstrap_interval(samples, np.median, confidence, resamples, seed)
    if interval.high <= budget:
        return "within"
    if interval.low > budget:
        return "over"
    return "marginal"
