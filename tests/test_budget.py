import pytest

from autotune.budget import Budget, format_bytes, parse_duration, parse_size
from autotune.errors import BudgetError


@pytest.mark.parametrize("text, expected", [
    ("2GB", 2_000_000_000), ("2G", 2_000_000_000), ("1.5GiB", int(1.5 * 2**30)), ("800MB", 800_000_000),
    ("512MiB", 512 * 2**20), ("100mb", 100_000_000), ("4096", 4096), (" 2GB ", 2_000_000_000),
])
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, expected", [("50ms", 0.05), ("0.05s", 0.05), ("1s", 1.0), ("800us", 0.0008)])
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["2XB", "-1GB", "fast", "0GB", "", "GB", "1e3GB", "2 GB", "9" * 30 + "GB"])
def test_bad_sizes_say_what_is_accepted(text: str) -> None:
    with pytest.raises(BudgetError, match="2GB"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0ms", "fast", "50", "-5ms", "5 parsecs", "50 ms", "3601s", "9" * 400 + "ms"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(BudgetError, match="50ms"):
        parse_duration(text)


def test_budget_parse_and_describe() -> None:
    budget = Budget.parse("2GB", "50ms", ttft="1s")
    assert budget.memory_bytes == 2_000_000_000 and budget.latency_ms == pytest.approx(50) and budget.ttft_ms == 1000
    assert "p95 inter-token latency ≤ 50 ms" in budget.describe()


def test_format_bytes_of_an_int_beyond_any_float_is_text_not_overflow() -> None:
    # A loaded profile may hold an int no float can hold (10**40 bytes); describing it must not raise.
    assert format_bytes(10**40).endswith(" GiB") and format_bytes(10**40).startswith("9313225746154785")
    assert Budget(memory_bytes=10**40, latency_ms=50).describe().startswith("memory ≤ 9313225746")
    assert [format_bytes(v) for v in (512, 2 * 2**30, 1536, -3 * 2**20, 370.2 * 2**20)] == [
        "512 B", "2 GiB", "1.5 KiB", "-3 MiB", "370.2 MiB"]
