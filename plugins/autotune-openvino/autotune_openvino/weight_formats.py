"""Weight formats an OpenVINO artifact can be built in, and building them with NNCF.

One categorical parameter, ``weight_format``, names the whole recipe (``fp16``, ``int8``,
``int4_asym_g64``, ``int4_sym_g128_r0.8``, ...): group size and ratio only mean something for
4-bit weights, and one name per recipe means one cached artifact per distinct file.

NNCF's data-free compression keeps the embedding and output projection at 8 bits when it
compresses the rest to 4 (as optimum-intel does); with a ratio below 1 the least sensitive
layers get 4 bits and the rest 8. A group size that does not divide a layer's input size is
adjusted to one that does (NNCF's ``ADJUST`` fallback), and ``ir_info`` records what was written.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Any

from autotune.errors import AutotuneError


@dataclass(frozen=True)
class WeightFormat:
    """One weight recipe: ``mode`` is NNCF's ``CompressWeightsMode`` name (``None``: plain float16)."""

    name: str
    mode: str | None
    group_size: int = -1
    ratio: float = 1.0

    @property
    def bits(self) -> int:
        """Nominal bits of the compressed layers."""
        return 16 if self.mode is None else 8 if self.mode.startswith("INT8") else 4


def _catalogue() -> dict[str, WeightFormat]:
    formats = [WeightFormat("fp16", None), WeightFormat("int8", "INT8_ASYM")]
    for ratio in (1.0, 0.8):
        for symmetry in ("sym", "asym"):
            for group in (32, 64, 128):
                suffix = "" if ratio == 1.0 else f"_r{ratio:g}"
                name = f"int4_{symmetry}_g{group}{suffix}"
                formats.append(WeightFormat(name, f"INT4_{symmetry.upper()}", group, ratio))
    return {f.name: f for f in formats}


WEIGHT_FORMATS: dict[str, WeightFormat] = _catalogue()
SOURCE = "source"
"""The ``weight_format`` that keeps an already-compressed source IR as it is."""


def weight_format(name: str) -> WeightFormat:
    """The recipe called ``name``, or an error listing the known ones."""
    if name not in WEIGHT_FORMATS:
        raise AutotuneError(f"unknown OpenVINO weight format {name!r}; known: {', '.join(WEIGHT_FORMATS)}")
    return WEIGHT_FORMATS[name]


def compress(model: Any, recipe: WeightFormat) -> Any:
    """Compress ``model``'s weights in place with NNCF as ``recipe`` says; return the model."""
    if recipe.mode is None:
        return model  # float16 is how save_model stores weights anyway
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    nncf.set_log_level(logging.ERROR)  # its statistics table would interleave with the tuner's output
    mode = getattr(nncf.CompressWeightsMode, recipe.mode)
    options: dict[str, Any] = {}
    if recipe.bits == 4:
        options = {"group_size": recipe.group_size, "ratio": recipe.ratio,
                   "advanced_parameters": AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)}
    # NNCF draws rich progress bars on stdout with no switch to turn them off.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.compress_weights(model, mode=mode, **options)


def predicted_weight_bytes(recipe: WeightFormat, parameters: int, backup_elements: int) -> int:
    """Bytes the weights take on disk in ``recipe`` (float16 scales, 4/8-bit zero points)."""
    if recipe.mode is None:
        return 2 * parameters
    if recipe.bits == 8:
        return parameters  # one byte each; a float16 scale and u8 zero point per output row are negligible
    zero_point = 4 if recipe.mode.endswith("ASYM") else 0
    int4_bits = 4 + (16 + zero_point) / max(recipe.group_size, 1)
    four_bit = (parameters - backup_elements) * recipe.ratio
    eight_bit = parameters - four_bit
    return int(four_bit * int4_bits / 8 + eight_bit)
