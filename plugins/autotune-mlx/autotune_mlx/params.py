"""The mlx backend's parameters as one typed model: what a profile may say, and what the exporters render.

``autotune validate`` checks a profile's ``params`` with ``MlxParams`` and the exporters render from the
validated object, so a profile that validates always exports. The fields are the search space's (see
``backend``); every one is optional, with the default ``QuantSpec.from_params`` and mlx-lm's generation assume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autotune import IntChoice, validate_params

from .quantization import BITS, DTYPES, GROUP_SIZES
from .settings import DEFAULT_PREFILL_STEP

KV_BITS = (16, 8, 4)
"""16: a float KV cache; 8 or 4: quantized from the first token."""
MAX_PREFILL_STEP = 2**20
"""Largest ``prefill_step_size`` accepted (the search tries 256 to 2048; mlx-lm takes any positive step)."""

# Literals built from the tables, so a width or dtype added there is accepted here too.
Bits = Literal[BITS]  # type: ignore[valid-type]
GroupSize = Literal[GROUP_SIZES]  # type: ignore[valid-type]
Dtype = Literal[DTYPES]  # type: ignore[valid-type]
KvBits = Literal[KV_BITS]  # type: ignore[valid-type]


class MlxParams(BaseModel):
    """One MLX configuration (bits, group size, mixed and dtype build the artifact; the rest are runtime settings)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    bits: IntChoice[Bits] = Field(default=16, description="weight bits; 16: not quantized")
    # None where bits is 16: canonical_params drops the group size there.
    group_size: IntChoice[GroupSize] | None = Field(default=64, description="weights per scale and bias")
    mixed: bool = Field(default=False, description="mlx-lm's mixed_{bits}_6 recipe (4 and 3 bits)")
    dtype: Dtype = Field(default="float16", description="float type of everything not quantized")
    kv_bits: IntChoice[KvBits] = Field(default=16, description="KV-cache bits; 16: a float cache")
    prefill_step_size: int = Field(default=DEFAULT_PREFILL_STEP, ge=1, le=MAX_PREFILL_STEP,
                                   description="prompt tokens prefilled per step")


def mlx_params(params: MlxParams | Mapping[str, Any]) -> MlxParams:
    """``params`` validated; ``ProfileError`` names the first bad parameter and what it accepts."""
    return validate_params(MlxParams, params, "mlx")
