"""Noise-aware decisions on synthetic interleaved rounds.

The model of a round: the machine's state scales every configuration of the round alike (±10 %,
the run-to-run difference seen on the 2-core machine), and each run adds its own ±5 % noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotune.decide.stats import (
    bootstrap_interval,
    budget_status,
    compare,
    paired_ratio,
    rank_finalists,
    sign_test,
)
from autotune.profile.schema import Interval

REPEATS = 200


def rounds(seed: int, n: int, ratio: float, *, base: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """Decode speeds of a (``ratio`` times b's speed) and b over ``n`` interleaved rounds."""
    rng = np.random.default_rng(seed)
    machine = rng.uniform(0.9, 1.1, n)
    a = base * ratio * machine * rng.uniform(0.95, 1.05, n)
    b = base * machine * rng.uniform(0.95, 1.05, n)
    return a, b


def test_bootstrap_interval_is_an_interval_around_the_median() -> None:
    samples = [70.1, 68.4, 72.3, 69.9, 71.0, 65.2, 70.5]
    interval = bootstrap_interval(samples)
    assert isinstance(interval, Interval)
    assert interval.value == pytest.approx(70.1)
    assert min(samples) <= interval.low <= interval.value <= interval.high <= max(samples)
    assert bootstrap_interval(samples) == interval  # seeded: the same answer every time
    assert bootstrap_interval(samples, np.mean).value == pytest.approx(np.mean(samples))


def test_wider_confidence_gives_a_wider_interval() -> None:
    samples = np.random.default_rng(3).normal(50, 5, 20)
    narrow, wide = bootstrap_interval(samples, confidence=0.8), bootstrap_interval(samples, confidence=0.99)
    assert wide.low <= narrow.low and narrow.high <= wide.high


def test_sign_test_exact_values() -> None:
    assert sign_test([2] * 6, [1] * 6) == pytest.approx(2 / 64)
    assert sign_test([2] * 5, [1] * 5) == pytest.approx(2 / 32)  # why 5 rounds cannot reach 0.05
    assert sign_test([2] * 9 + [0.5], [1] * 10) == pytest.approx(2 * 11 / 1024)
    assert sign_test([1, 1, 1], [1, 1, 1]) == 1.0  # no signed rounds
    assert sign_test([2, 0.5, 2, 0.5], [1] * 4) == 1.0


def test_mismatched_rounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        compare([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        paired_ratio([1.0, 0.0], [1.0, 1.0])


def test_a_clear_winner_is_found_and_never_reversed() -> None:
    verdicts = [compare(*rounds(seed, 7, 1.10)).verdict for seed in range(REPEATS)]
    assert verdicts.count("a") >= 0.95 * REPEATS
    assert "b" not in verdicts


def test_lower_is_better_mirrors_the_verdict() -> None:
    a_speed, b_speed = rounds(1, 7, 1.10)
    a_latency, b_latency = 1000 / a_speed, 1000 / b_speed
    assert compare(a_speed, b_speed).verdict == "a"
    assert compare(a_latency, b_latency, higher_is_better=False).verdict == "a"
    assert compare(b_latency, a_latency, higher_is_better=False).verdict == "b"


def test_same_distribution_is_a_tie() -> None:
    verdicts = [compare(*rounds(seed, 7, 1.0)).verdict for seed in range(REPEATS)]
    assert verdicts.count("tie") >= 0.95 * REPEATS


def test_a_small_true_difference_is_never_a_wrong_winner() -> None:
    verdicts = [compare(*rounds(seed, 7, 1.03)).verdict for seed in range(REPEATS)]
    assert "b" not in verdicts


def test_min_effect_turns_a_small_win_into_a_tie() -> None:
    a, b = rounds(4, 10, 1.10)
    assert compare(a, b).verdict == "a"
    assert compare(a, b, min_effect=0.5).verdict == "tie"


def test_five_rounds_need_every_round_to_agree() -> None:
    a = np.array([77.0, 76.0, 78.0, 75.0, 77.5])
    b = np.array([70.0, 70.0, 70.0, 70.0, 70.0])
    assert compare(a, b).verdict == "a"
    a[2] = 69.0  # one round goes the other way: 4 of 5 is not evidence
    assert compare(a, b).verdict == "tie"


def test_the_sign_test_must_agree_with_the_interval() -> None:
    b = np.full(7, 70.0)
    a = b * np.array([1.2, 1.21, 1.19, 1.2, 1.22, 1.18, 0.9])
    result = compare(a, b)
    assert result.ratio.low > 1  # the interval alone would call a winner ...
    assert result.verdict == "tie" and "sign test" in result.reason  # ... but 6 of 7 rounds is p = 0.125
    assert result.sign_p == pytest.approx(2 * 8 / 128)
    a[-1] = 80.0
    assert compare(a, b).verdict == "a"


def test_one_outlier_run_does_not_flip_a_clear_result() -> None:
    a, b = rounds(2, 10, 1.10)
    before = compare(a, b)
    a[3] /= 3  # the winner's run in round 3 was 3x slower
    after = compare(a, b)
    assert before.verdict == after.verdict == "a"
    assert after.ratio.value == pytest.approx(before.ratio.value, rel=0.05)
    # The same outlier with a mean would have dragged the estimate well below the true 1.10.
    assert math.exp(np.mean(np.log(a / b))) < 1.05


def test_a_disturbed_round_cancels_out_of_the_pairing() -> None:
    a, b = rounds(5, 7, 1.10)
    before = compare(a, b)
    a[1] /= 3
    b[1] /= 3  # the whole round ran 3x slower: something else held the CPU
    after = compare(a, b)
    assert after.verdict == before.verdict == "a"
    assert (after.ratio.low, after.ratio.value, after.ratio.high) == pytest.approx(
        (before.ratio.low, before.ratio.value, before.ratio.high), rel=1e-9)


def test_speedup_interval_contains_the_true_ratio() -> None:
    a, b = rounds(6, 10, 1.10)
    ratio = paired_ratio(a, b)
    assert ratio.low <= 1.10 <= ratio.high
    intervals = [paired_ratio(*rounds(seed, 10, 1.10)) for seed in range(REPEATS)]
    covered = sum(interval.low <= 1.10 <= interval.high for interval in intervals)
    # A percentile bootstrap of a median under-covers a little with 10 rounds (measured: ~91 %).
    assert covered >= 0.85 * REPEATS


def test_rank_finalists_separates_the_tied_from_the_beaten() -> None:
    rng = np.random.default_rng(9)
    machine = rng.uniform(0.9, 1.1, 8)
    noise = lambda: rng.uniform(0.99, 1.01, 8)  # noqa: E731
    ranked = rank_finalists({
        "q4_0 t2": 88 * machine * noise(),
        "q4_k t2": 87.5 * machine * noise(),
        "q8_0 t2": 70 * machine * noise(),
    })
    assert {r.name for r in ranked[:2]} == {"q4_0 t2", "q4_k t2"}  # 0.6 % apart: either may lead
    assert [r.tied_with_best for r in ranked] == [True, True, False]
    assert ranked[0].comparison is None
    assert ranked[1].comparison.verdict == "tie" and ranked[2].comparison.verdict == "a"
    assert ranked[0].median.value >= ranked[1].median.value >= ranked[2].median.value

    latencies = {"fast": [10.0, 11.0, 10.5, 10.2, 10.8, 10.1], "slow": [14.0, 15.0, 14.2, 14.8, 14.1, 14.6]}
    assert rank_finalists(latencies, higher_is_better=False)[0].name == "fast"
    with pytest.raises(ValueError, match="one value per round"):
        rank_finalists({"x": [1.0, 2.0], "y": [1.0]})


def test_budget_status() -> None:
    p95 = [41.0, 44.0, 43.5, 42.0, 45.0, 43.0, 44.2]
    assert budget_status(p95, budget=50.0) == "within"
    assert budget_status(p95, budget=40.0) == "over"
    assert budget_status(p95, budget=43.5) == "marginal"
