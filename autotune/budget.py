"""Budgets: how much memory and time a deployment may use.

The sizes and durations in a budget are read by ``autotune.numbers`` (``2GB``, ``1.5GiB``, ``50ms``),
which bounds every number a user types; ``parse_size`` and ``parse_duration`` are re-exported here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from autotune.errors import BudgetError, InputError
from autotune.numbers import DURATION_FORMS, SIZE_FORMS, parse_duration, parse_real, parse_size

__all__ = ["DURATION_FORMS", "SIZE_FORMS", "Budget", "format_bytes", "parse_duration", "parse_quality_loss",
           "parse_size"]

MAX_QUALITY_LOSS = 100.0
"""Largest accepted mean KL divergence (nats): far beyond any usable model, so a larger value is a typo."""


def parse_quality_loss(value: str | float) -> float:
    """Read a quality-loss budget (mean KL divergence, ``0.05``) typed as text or given as a number."""
    text = value if isinstance(value, str) else repr(float(value))
    try:
        return parse_real(text, at_least=0.0, at_most=MAX_QUALITY_LOSS, example="0.05")
    except InputError as error:
        raise BudgetError(f"quality loss (mean KL divergence): {error}") from None


def format_bytes(size: float | None) -> str:
    """Render bytes with a binary unit for humans, at most one decimal (``370.2 MiB``, ``2 GiB``, ``512 B``)."""
    if size is None:
        return "-"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= factor:
            if isinstance(size, int):  # integer arithmetic: a loaded profile's int may exceed any float
                whole, tenth = divmod((abs(size) * 10 + factor // 2) // factor, 10)
                return f"{'-' if size < 0 else ''}{whole}{f'.{tenth}' if tenth else ''} {unit}"
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(size)} B"


class Budget(BaseModel):
    """What a deployment may cost: the constraints every chosen configuration must meet.

    ``latency_ms`` is the p95 inter-token latency while decoding (time between two generated
    tokens); time to first token is a separate, optional budget (``ttft_ms``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # allow_inf_nan=False: infinity passes gt=0 and would be written to a profile as null.
    memory_bytes: int = Field(gt=0, description="peak resident memory of the serving process, bytes")
    latency_ms: float = Field(gt=0, allow_inf_nan=False, description="p95 inter-token decode latency, milliseconds")
    ttft_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="time to first token, milliseconds")
    max_quality_loss: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="largest accepted mean KL divergence from the reference"
    )

    @classmethod
    def parse(
        cls,
        memory: str,
        latency: str,
        ttft: str | None = None,
        max_quality_loss: float | str | None = None,
    ) -> Budget:
        """Build a budget from the user's strings (``"2GB"``, ``"50ms"``); anything out of range raises ``BudgetError``."""
        return cls(
            memory_bytes=parse_size(memory),
            latency_ms=parse_duration(latency) * 1000,
            ttft_ms=parse_duration(ttft) * 1000 if ttft is not None else None,
            max_quality_loss=parse_quality_loss(max_quality_loss) if max_quality_loss is not None else None,
        )

    def terms(self) -> list[str]:
        """The budgets besides memory in short words (``p95 50 ms``, ``TTFT 200 ms``, ``KL 0.05``), for names and
        evidence lines; each caller spells the memory its own way (a study name in GiB, an export in whole MiB)."""
        found = [f"p95 {self.latency_ms:g} ms"]
        if self.ttft_ms is not None:
            found.append(f"TTFT {self.ttft_ms:g} ms")
        if self.max_quality_loss is not None:
            found.append(f"KL {self.max_quality_loss:g}")
        return found

    def describe(self) -> str:
        """One line for humans."""
        parts = [f"memory ≤ {format_bytes(self.memory_bytes)}", f"p95 inter-token latency ≤ {self.latency_ms:g} ms"]
        if self.ttft_ms is not None:
            parts.append(f"TTFT ≤ {self.ttft_ms:g} ms")
        if self.max_quality_loss is not None:
            parts.append(f"KL divergence ≤ {self.max_quality_loss:g}")
        return ", ".join(parts)
