"""The runtime settings mlx-lm's generation takes: what the tuner searches, the session runs and the exporters render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_PREFILL_STEP = 2048
"""mlx-lm's default ``prefill_step_size``."""


@dataclass(frozen=True)
class RuntimeSettings:
    """The runtime parameters mlx-lm's generation takes (and the tuner searches)."""

    kv_bits: int = 16
    """16: a float KV cache; 8 or 4: quantized from the first token (``quantized_kv_start=0``)."""
    kv_group_size: int | None = 64
    prefill_step_size: int = DEFAULT_PREFILL_STEP

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``mlx_lm.generate_step`` (and ``generate``) for these settings."""
        kwargs: dict[str, Any] = {"prefill_step_size": self.prefill_step_size}
        if self.kv_bits < 16:
            # mlx-lm's default starts quantizing at token 5000; the tuned setting quantizes from the start.
            kwargs.update(kv_bits=self.kv_bits, kv_group_size=self.kv_group_size, quantized_kv_start=0)
        return kwargs
