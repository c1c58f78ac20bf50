"""Properties of the number parsers: any text parses to a finite in-range value, or raises the project's error.

Never another exception (no ``OverflowError``, no infinity, no pydantic ``ValidationError``), and every
message is one printable line.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autotune.budget import MAX_QUALITY_LOSS, Budget, parse_duration, parse_quality_loss, parse_size
from autotune.errors import BudgetError, InputError
from autotune.numbers import MAX_DURATION_S, MAX_SIZE_BYTES, MIN_DURATION_S, parse_real, parse_whole

UNITS = ["", "b", "B", "k", "K", "KB", "kb", "M", "MB", "MiB", "G", "GB", "gib", "GiB", "T", "TB", "TiB", "PB",
         "us", "ms", "MS", "s", "h", "min", "xb", "e3"]
SPACES = ["", "", "", " ", "  ", "\t", "\n", "\u00a0"]

digits = st.text("0123456789", min_size=0, max_size=120)
numberish = st.builds(
    lambda lead, sign, whole, dot, frac, gap, unit, tail: f"{lead}{sign}{whole}{dot}{frac}{gap}{unit}{tail}",
    st.sampled_from(SPACES), st.sampled_from(["", "", "-", "+"]), digits, st.sampled_from(["", ".", ","]), digits,
    st.sampled_from(SPACES), st.sampled_from(UNITS), st.sampled_from(SPACES),
)
"""Text shaped like a size or a duration, often almost right: the inputs a parser must get exactly right."""
odd_text = st.text(alphabet=st.sampled_from(list("0123456789.,eE+-_ \t\nkKmMgGtTiIbBsSuµ٥١nafNAF∞")), max_size=80)
any_text = st.one_of(numberish, odd_text, st.text(max_size=200))


def assert_one_line(error: Exception) -> None:
    """A message the CLI can print as one line."""
    message = str(error)
    assert message and message.isprintable(), message


@settings(max_examples=400)
@given(any_text)
@example("9" * 9998 + "GB")
@example("2 GB")
@example("1e3GB")
@example("٥GB")
def test_any_size_text_is_in_range_or_refused(text: str) -> None:
    try:
        size = parse_size(text)
    except BudgetError as error:
        assert_one_line(error)
        return
    assert isinstance(size, int) and 1 <= size <= MAX_SIZE_BYTES


@settings(max_examples=400)
@given(any_text)
@example("9" * 400 + "ms")
@example("50 ms")
@example("nanms")
@example("infs")
def test_any_duration_text_is_in_range_or_refused(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except BudgetError as error:
        assert_one_line(error)
        return
    assert math.isfinite(seconds) and MIN_DURATION_S <= seconds <= MAX_DURATION_S


@settings(max_examples=300)
@given(any_text, any_text, st.none() | any_text,
       st.none() | any_text | st.floats(allow_nan=True, allow_infinity=True))
@example("2GB", "50ms", None, float("nan"))
@example("2GB", "50ms", "", "1e400")
def test_any_budget_text_builds_a_finite_budget_or_is_refused(memory: str, latency: str, ttft: str | None,
                                                              loss: str | float | None) -> None:
    try:
        budget = Budget.parse(memory, latency, ttft, loss)
    except BudgetError as error:
        assert_one_line(error)
        return
    assert 1 <= budget.memory_bytes <= MAX_SIZE_BYTES
    assert math.isfinite(budget.latency_ms) and budget.latency_ms > 0
    assert budget.ttft_ms is None or (math.isfinite(budget.ttft_ms) and budget.ttft_ms > 0)
    assert budget.max_quality_loss is None or 0 <= budget.max_quality_loss <= MAX_QUALITY_LOSS
    # A budget always survives the trip through JSON that a profile makes (no infinity written as null).
    assert Budget.model_validate_json(budget.model_dump_json()) == budget


@given(st.integers(min_value=1, max_value=MAX_SIZE_BYTES))
def test_every_byte_count_in_range_reads_back_exactly(size: int) -> None:
    assert parse_size(str(size)) == size
    assert parse_size(f"{size}B") == size


@given(st.integers(min_value=MAX_SIZE_BYTES + 1, max_value=10**40), st.sampled_from(["", "B", "KB", "GiB", "TB"]))
def test_sizes_beyond_the_bound_are_refused_with_the_bound(size: int, unit: str) -> None:
    with pytest.raises(BudgetError, match=r"at most 2\^60 bytes"):
        parse_size(f"{size}{unit}")


@given(st.integers(min_value=1, max_value=2**20), st.sampled_from([("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30),
                                                                   ("TiB", 2**40), ("KB", 10**3), ("GB", 10**9)]))
def test_units_scale_exactly(count: int, unit: tuple[str, int]) -> None:
    name, factor = unit
    assert parse_size(f"{count}{name}") == count * factor


@given(st.integers(min_value=1, max_value=3_600_000))
def test_milliseconds_read_back(ms: int) -> None:
    assert parse_duration(f"{ms}ms") == pytest.approx(ms / 1000)
    assert Budget.parse("1GB", f"{ms}ms").latency_ms == pytest.approx(ms)


@given(st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?", fullmatch=True),
       st.sampled_from(["GB", "MiB", "ms", "s"]), st.sampled_from([" ", "  ", "\t"]))
def test_a_space_before_the_unit_is_refused_showing_the_accepted_form(number: str, unit: str, gap: str) -> None:
    parse = parse_size if unit in ("GB", "MiB") else parse_duration
    with pytest.raises(BudgetError, match="together") as caught:
        parse(f"{number}{gap}{unit}")
    assert f"{number}{unit}" in str(caught.value)


@settings(max_examples=300)
@given(any_text, st.integers(min_value=-5, max_value=100), st.integers(min_value=0, max_value=2**40))
def test_whole_numbers_are_in_range_or_refused(text: str, low: int, span: int) -> None:
    try:
        value = parse_whole(text, at_least=low, at_most=low + span, example=str(low))
    except InputError as error:
        assert_one_line(error)
        return
    assert isinstance(value, int) and low <= value <= low + span


@settings(max_examples=300)
@given(st.one_of(any_text, st.floats().map(repr)))
@example("nan")
@example("-inf")
@example("1e400")
@example("-0")
def test_quality_loss_is_finite_in_range_or_refused(text: str) -> None:
    try:
        loss = parse_quality_loss(text)
    except BudgetError as error:
        assert_one_line(error)
        return
    assert math.isfinite(loss) and 0 <= loss <= MAX_QUALITY_LOSS and math.copysign(1, loss) == 1


@given(st.floats(min_value=0, max_value=MAX_QUALITY_LOSS))
def test_every_float_in_range_reads_back(value: float) -> None:
    assert parse_real(repr(value), at_least=0, at_most=MAX_QUALITY_LOSS, example="0.05") == value
    assert parse_quality_loss(value) == value
