"""Budgets: how much memory and time a deployment may use.

Sizes use decimal units for ``KB``/``MB``/``GB``/``TB`` (and the bare ``K``/``M``/``G``/``T``) and
binary units for ``KiB``/``MiB``/``GiB``/``TiB``: ``2GB`` is 2 000 000 000 bytes, ``2GiB`` is
2 147 483 648. Durations accept ``ms``, ``s`` and ``us``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from .errors import BudgetError

SIZE_FORMS = "2GB, 2G, 1.5GiB, 800MB, 512MiB (GB = 10^9 bytes, GiB = 2^30)"
DURATION_FORMS = "50ms, 0.05s, 1s, 800us"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_NUMBER_AND_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def _split(text: str, kind: str, forms: str) -> tuple[float, str]:
    match = _NUMBER_AND_UNIT.match(str(text))
    if not match:
        raise BudgetError(f"cannot read {kind} {text!r}: use a positive number with a unit, e.g. {forms}")
    return float(match.group(1)), match.group(2).lower()


def parse_size(text: str) -> int:
    """Parse a memory size such as ``2GB`` or ``512MiB`` into bytes (a bare number is bytes)."""
    value, unit = _split(text, "size", SIZE_FORMS)
    if unit not in _SIZE_UNITS:
        raise BudgetError(f"unknown size unit in {text!r}: use one of {SIZE_FORMS}")
    size = int(round(value * _SIZE_UNITS[unit]))
    if size <= 0:
        raise BudgetError(f"size {text!r} must be greater than zero, e.g. {SIZE_FORMS}")
    return size


def parse_duration(text: str) -> float:
    """Parse a duration such as ``50ms`` or ``0.05s`` into seconds; a unit is required."""
    value, unit = _split(text, "duration", DURATION_FORMS)
    if unit not in _DURATION_UNITS:
        raise BudgetError(f"unknown or missing time unit in {text!r}: use one of {DURATION_FORMS}")
    seconds = value * _DURATION_UNITS[unit]
    if seconds <= 0:
        raise BudgetError(f"duration {text!r} must be greater than zero, e.g. {DURATION_FORMS}")
    return seconds


def format_bytes(size: float | None) -> str:
    """Render bytes with a binary unit for humans (``370.2 MiB``)."""
    if size is None:
        return "-"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{int(size)} B"


class Budget(BaseModel):
    """What a deployment may cost: the constraints every chosen configuration must meet.

    ``latency_ms`` is the p95 inter-token latency while decoding (time between two generated
    tokens); time to first token is a separate, optional budget (``ttft_ms``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_bytes: int = Field(gt=0, description="peak resident memory of the serving process, bytes")
    latency_ms: float = Field(gt=0, description="p95 inter-token decode latency, milliseconds")
    ttft_ms: float | None = Field(default=None, gt=0, description="time to first token, milliseconds")
    max_quality_loss: float | None = Field(
        default=None, ge=0, description="largest accepted mean KL divergence from the reference"
    )

    @classmethod
    def parse(
        cls,
        memory: str,
        latency: str,
        ttft: str | None = None,
        max_quality_loss: float | None = None,
    ) -> "Budget":
        """Build a budget from the user's strings (``"2GB"``, ``"50ms"``)."""
        return cls(
            memory_bytes=parse_size(memory),
            latency_ms=parse_duration(latency) * 1000,
            ttft_ms=parse_duration(ttft) * 1000 if ttft else None,
            max_quality_loss=max_quality_loss,
        )

    def describe(self) -> str:
        """One line for humans."""
        parts = [f"memory ≤ {format_bytes(self.memory_bytes)}", f"p95 inter-token latency ≤ {self.latency_ms:g} ms"]
        if self.ttft_ms is not None:
            parts.append(f"TTFT ≤ {self.ttft_ms:g} ms")
        if self.max_quality_loss is not None:
            parts.append(f"KL divergence ≤ {self.max_quality_loss:g}")
        return ", ".join(parts)
