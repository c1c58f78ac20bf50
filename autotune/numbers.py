"""Every number a user types: read strictly, kept within a sane finite range, or refused in one line.

Sizes use decimal units for ``KB``/``MB``/``GB``/``TB`` (and the bare ``K``/``M``/``G``/``T``) and
binary units for ``KiB``/``MiB``/``GiB``/``TiB``: ``2GB`` is 2 000 000 000 bytes, ``2GiB`` is
2 147 483 648; a bare number is bytes. Durations need a unit: ``us``, ``ms`` or ``s``. The number and
its unit are written together (``2GB``, not ``2 GB``) so that one typed form means one thing.

Sizes and durations are computed exactly (``Fraction``), so a number of any length either lands in
range or is refused; it never overflows to infinity or to an ``OverflowError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction

from autotune.errors import BudgetError, InputError

SIZE_FORMS = "2GB, 2G, 1.5GiB, 800MB, 512MiB (GB = 10^9 bytes, GiB = 2^30)"
DURATION_FORMS = "50ms, 0.05s, 1s, 800us"

MAX_SIZE_BYTES = 2**60
"""1 EiB: far above any machine's memory, and small enough to stay exact as an int and as a float."""
MIN_DURATION_S = 1e-6
"""1us, the finest unit accepted."""
MAX_DURATION_S = 3600.0
"""One hour: no latency budget is longer."""
MAX_TEXT_CHARS = 64
"""No sensible number is longer; refusing longer text keeps parsing cheap and messages one short line."""

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION_UNITS = {"us": Fraction(1, 10**6), "ms": Fraction(1, 10**3), "s": Fraction(1)}

# ASCII digits only: Python's \d and float() also take other scripts' digits, which nobody means here.
_DECIMAL = r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
_NUMBER_AND_UNIT = re.compile(rf"({_DECIMAL})([A-Za-z]*)")
_NUMBER_SPACE_UNIT = re.compile(rf"({_DECIMAL})\s+([A-Za-z]+)")
_WHOLE = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def quoted(text: str, limit: int = 24) -> str:
    """The user's text for a message: quoted, with control characters escaped, cut after ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _number_and_unit(text: str, kind: str, forms: str, units: Mapping[str, object]) -> tuple[Fraction, str]:
    """Split ``text`` into its exact number and its unit (as typed), or raise saying which form is accepted."""
    stripped = text.strip()
    if len(stripped) > MAX_TEXT_CHARS:
        raise BudgetError(f"cannot read {kind} {quoted(text)}: {len(stripped)} characters is too long; "
                          f"use e.g. {forms}")
    match = _NUMBER_AND_UNIT.fullmatch(stripped)
    if match is not None:
        return Fraction(match.group(1)), match.group(2)
    spaced = _NUMBER_SPACE_UNIT.fullmatch(stripped)
    if spaced is not None and spaced.group(2).lower() in units:
        raise BudgetError(f"cannot read {kind} {quoted(text)}: write the number and its unit together, as "
                          f"{spaced.group(1)}{spaced.group(2)} (accepted: {forms})")
    if stripped.startswith("-"):
        raise BudgetError(f"cannot read {kind} {quoted(text)}: a {kind} cannot be negative; use e.g. {forms}")
    raise BudgetError(f"cannot read {kind} {quoted(text)}: use a positive number with a unit, e.g. {forms}")


def _describe_seconds(seconds: float) -> str:
    """A bound in the units the user types (``3600s``, ``1us``)."""
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1e6:g}us"


def parse_size(text: str) -> int:
    """Parse a memory size such as ``2GB`` or ``512MiB`` into bytes, from 1 to ``MAX_SIZE_BYTES``."""
    number, unit = _number_and_unit(text, "size", SIZE_FORMS, _SIZE_UNITS)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise BudgetError(f"unknown size unit in {quoted(text)}: use one of {SIZE_FORMS}")
    size = round(number * factor)
    if size < 1:
        raise BudgetError(f"size {quoted(text)} must be greater than zero, e.g. {SIZE_FORMS}")
    if size > MAX_SIZE_BYTES:
        raise BudgetError(f"size {quoted(text)} is too large: at most 2^60 bytes (1048576TiB), e.g. {SIZE_FORMS}")
    return size


def parse_duration(text: str, *, at_least: float = MIN_DURATION_S, at_most: float = MAX_DURATION_S) -> float:
    """Parse a duration such as ``50ms`` or ``0.05s`` into seconds, from ``at_least`` to ``at_most``; a unit is required."""
    number, unit = _number_and_unit(text, "duration", DURATION_FORMS, _DURATION_UNITS)
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise BudgetError(f"unknown or missing time unit in {quoted(text)}: use one of {DURATION_FORMS}")
    seconds = number * factor
    if seconds == 0:
        raise BudgetError(f"duration {quoted(text)} must be greater than zero, e.g. {DURATION_FORMS}")
    if seconds < Fraction(at_least) or seconds > Fraction(at_most):
        raise BudgetError(f"duration {quoted(text)} is out of range: from {_describe_seconds(at_least)} to "
                          f"{_describe_seconds(at_most)}, e.g. {DURATION_FORMS}")
    return float(seconds)


def parse_whole(text: str, *, at_least: int, at_most: int, example: str) -> int:
    """Parse a whole number (ASCII digits, optional sign) from ``at_least`` to ``at_most``."""
    accepted = f"expected a whole number from {at_least} to {at_most} (e.g. {example})"
    stripped = text.strip()
    # Checked before int(): int() also takes "1_000" and other scripts' digits, and refuses >4300 digits.
    if len(stripped) > MAX_TEXT_CHARS or not _WHOLE.fullmatch(stripped):
        raise InputError(f"{accepted}, got {quoted(text)}")
    value = int(stripped)
    if not at_least <= value <= at_most:
        raise InputError(f"{accepted}, got {quoted(text)}")
    return value


def parse_real(text: str, *, at_least: float, at_most: float, example: str) -> float:
    """Parse a finite decimal number (``0.05``, ``5e-3``) from ``at_least`` to ``at_most``; nan and inf are refused."""
    accepted = f"expected a finite number from {at_least:g} to {at_most:g} (e.g. {example})"
    stripped = text.strip()
    if len(stripped) > MAX_TEXT_CHARS or not _REAL.fullmatch(stripped):
        raise InputError(f"{accepted}, got {quoted(text)}")
    value = float(stripped)  # a huge exponent gives inf, refused below; a tiny one gives 0.0
    if not math.isfinite(value) or not at_least <= value <= at_most:
        raise InputError(f"{accepted}, got {quoted(text)}")
    return value + 0.0  # "-0" is zero, not a negative zero in messages and profiles
