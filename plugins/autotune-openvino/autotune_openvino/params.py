"""The openvino backend's parameters as one typed model: what a profile may say, and what the exporters render.

``autotune validate`` checks a profile's ``params`` with ``OpenVinoParams`` and the exporters render from the
validated object, so a profile that validates always exports. The fields are the search space's (see
``backend``); the runtime settings are optional (unset: OpenVINO's own default for the device).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autotune import MAX_THREADS, validate_params

from .weight_formats import SOURCE, WEIGHT_FORMATS

PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
"""``INFERENCE_PRECISION_HINT`` values; the search offers bf16 and f16 only where the CPU computes them."""
KV_CACHE_PRECISIONS = ("u8", "f16", "f32")

# Literals built from the tables, so a recipe added to the catalogue is accepted here too.
WeightFormatName = Literal[(SOURCE, *WEIGHT_FORMATS)]  # type: ignore[valid-type]
PerformanceHint = Literal[PERFORMANCE_HINTS]  # type: ignore[valid-type]
InferencePrecision = Literal[INFERENCE_PRECISIONS]  # type: ignore[valid-type]
KvCachePrecision = Literal[KV_CACHE_PRECISIONS]  # type: ignore[valid-type]


class OpenVinoParams(BaseModel):
    """One OpenVINO configuration (``weight_format`` builds the artifact; the rest are compile properties)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    weight_format: WeightFormatName = Field(default=SOURCE, description="weight recipe; 'source': the IR as it is")
    # Device ids as OpenVINO's available_devices lists them: CPU, GPU, GPU.0, NPU.
    device: str = Field(default="CPU", pattern=r"^[A-Z]{2,16}(\.[0-9]{1,3})?$", description="compile_model device")
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS,
                                description="INFERENCE_NUM_THREADS on the CPU; null: OpenVINO's default")
    performance_hint: PerformanceHint | None = Field(default=None, description="PERFORMANCE_HINT")
    inference_precision: InferencePrecision | None = Field(default=None, description="INFERENCE_PRECISION_HINT")
    kv_cache_precision: KvCachePrecision | None = Field(default=None, description="KV_CACHE_PRECISION")


def openvino_params(params: OpenVinoParams | Mapping[str, Any]) -> OpenVinoParams:
    """``params`` validated; ``ProfileError`` names the first bad parameter and what it accepts."""
    return validate_params(OpenVinoParams, params, "openvino")
