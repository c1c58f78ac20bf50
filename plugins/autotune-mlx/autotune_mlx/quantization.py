"""How an MLX artifact is quantized: the artifact parameters, their canonical form and their cost.

mlx-lm quantizes every ``Linear`` and ``Embedding`` whose input dimension divides the group size
(affine quantization: ``bits`` per weight plus a scale and a bias per group, both in ``dtype``);
everything else stays in ``dtype``. Its mixed recipes (``--quant-predicate mixed_4_6``) keep most
layers at the low width and raise ``v_proj``/``down_proj`` of the first and last eighth of the
layers (and every third in between) and ``lm_head`` to 6 bits, like llama.cpp's ``Q4_K_M``.

Artifact parameters:

- ``bits``: 16 (not quantized: weights stay in ``dtype``), 8, 4 or 3
- ``group_size``: 32, 64 or 128 weights per scale/bias (ignored when not quantized)
- ``mixed``: use mlx-lm's ``mixed_{bits}_6`` recipe (only for 4 and 3 bits; ignored otherwise)
- ``dtype``: float type of everything not quantized: activations, norms, scales, the KV cache

Several parameter combinations build the same artifact (``bits=16`` with any group size);
``QuantSpec.from_params`` maps them to one canonical form so they share one cache entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autotune import Params
from autotune.errors import AutotuneError

BITS = (16, 8, 4, 3)
GROUP_SIZES = (32, 64, 128)
DEFAULT_GROUP_SIZE = 64
"""mlx-lm's default, and the group size unquantized weights are spelled with (it has no effect on them)."""
DTYPES = ("float16", "bfloat16", "float32")
MIXED_BITS = (4, 3)
"""Widths with an mlx-lm mixed recipe (``mixed_4_6``, ``mixed_3_6``) worth tuning; ``mixed_2_6`` is too lossy."""
MIXED_HIGH_BITS = 6
ARTIFACT_PARAMS = ("bits", "group_size", "mixed", "dtype")
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class QuantSpec:
    """One artifact's quantization, in canonical form (see ``from_params``)."""

    bits: int
    group_size: int | None
    mixed: bool
    dtype: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QuantSpec:
        """Validate the artifact parameters and drop the ones that cannot matter."""
        bits, group_size = params.get("bits", 16), params.get("group_size", 64)
        mixed, dtype = bool(params.get("mixed", False)), params.get("dtype", "float16")
        if bits not in BITS:
            choices = ", ".join(map(str, BITS))
            raise AutotuneError(f"MLX bits must be one of {choices} (16 = not quantized), not {bits!r}")
        if dtype not in DTYPES:
            raise AutotuneError(f"MLX dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if bits == 16:
            return cls(bits=16, group_size=None, mixed=False, dtype=dtype)
        if group_size not in GROUP_SIZES:
            raise AutotuneError(
                f"MLX group_size must be one of {', '.join(map(str, GROUP_SIZES))}, not {group_size!r}"
            )
        return cls(bits=bits, group_size=group_size, mixed=mixed and bits in MIXED_BITS, dtype=dtype)

    def params(self) -> Params:
        """The canonical artifact parameters: a configuration of the search space itself (unquantized weights have
        no group size, so theirs is spelled as the default 64, a value the space offers, not as None)."""
        return {"bits": self.bits, "group_size": self.group_size or DEFAULT_GROUP_SIZE, "mixed": self.mixed,
                "dtype": self.dtype}

    @property
    def quantized(self) -> bool:
        """True when weights are quantized (bits below 16)."""
        return self.bits < 16

    @property
    def recipe(self) -> str | None:
        """mlx-lm's ``quant_predicate`` recipe name, when mixed."""
        return f"mixed_{self.bits}_{MIXED_HIGH_BITS}" if self.mixed else None

    @property
    def label(self) -> str:
        """A short name: ``float16``, ``q4-g64-float16``, ``mixed_4_6-g64-float32``."""
        if not self.quantized:
            return self.dtype
        return f"{self.recipe or f'q{self.bits}'}-g{self.group_size}-{self.dtype}"

    def convert_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``mlx_lm.convert`` that build this artifact."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.quantized:
            kwargs.update(quantize=True, q_bits=self.bits, q_group_size=self.group_size, quant_predicate=self.recipe)
        return kwargs

    def tensor_bytes(self, name: str, shape: list[int], num_layers: int) -> float:
        """Bytes one source tensor takes in the artifact (mirrors mlx-lm's quantization decisions)."""
        count = 1
        for dim in shape:
            count *= dim
        dtype_bytes = DTYPE_BYTES[self.dtype]
        # Linear and Embedding weights are the 2-D ``*.weight`` tensors of a decoder checkpoint.
        quantizable = name.endswith(".weight") and len(shape) == 2
        if not self.quantized or not quantizable or self.group_size is None or shape[-1] % self.group_size:
            return count * dtype_bytes
        bits = self._bits_for(name, num_layers)
        # Per group: a scale and a bias in dtype.
        return count * bits / 8 + count / self.group_size * 2 * dtype_bytes

    def _bits_for(self, name: str, num_layers: int) -> int:
        """The width mlx-lm's mixed recipe gives a tensor (``mixed_quant_predicate_builder``)."""
        if not self.mixed:
            return self.bits
        if "lm_head" in name:
            return MIXED_HIGH_BITS
        match = _LAYER_INDEX.search(name)
        index = int(match.group(1)) if match else 0
        more = index < num_layers // 8 or index >= 7 * num_layers // 8 or (index - num_layers // 8) % 3 == 2
        if more and ("v_proj" in name or "down_proj" in name):
            return MIXED_HIGH_BITS
        return self.bits
