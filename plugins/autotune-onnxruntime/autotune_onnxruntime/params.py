"""The onnxruntime backend's parameters as one typed model: what a profile may say, and what the exporters render.

``autotune validate`` checks a profile's ``params`` with ``OnnxRuntimeParams`` and the exporters render from the
validated object, so a profile that validates always exports. The fields are the search space's (see
``backend``); the choices come from the tables the backend builds and runs with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autotune import MAX_THREADS, IntChoice, validate_params

from .convert import BLOCK_SIZES, PRECISIONS
from .providers import BY_SHORT

GRAPH_LEVELS = ("ORT_ENABLE_BASIC", "ORT_ENABLE_ALL")
"""Graph optimization levels worth searching (DISABLE_ALL is never faster; EXTENDED is a subset of ALL)."""

# Literals built from the tables, so a precision or provider added there is accepted here too.
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
BlockSize = Literal[BLOCK_SIZES]  # type: ignore[valid-type]
GraphLevel = Literal[GRAPH_LEVELS]  # type: ignore[valid-type]
ExecutionProvider = Literal[("cpu", *BY_SHORT)]  # type: ignore[valid-type]
ACCURACY_LEVELS = (0, 1, 2, 3, 4)
"""The model builder's ``accuracy_level``: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 activations (the search uses 0, 4)."""


class OnnxRuntimeParams(BaseModel):
    """One onnxruntime-genai configuration (precision, block size and accuracy level build the artifact)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    precision: Precision = Field(description="weight precision of the built model")
    # None where the precision is a float one: canonical_params drops them there.
    block_size: IntChoice[BlockSize] | None = Field(default=None, description="int4/int8 quantization block size")
    accuracy_level: IntChoice[Literal[ACCURACY_LEVELS]] | None = Field(  # type: ignore[valid-type]
        default=None, description="int4/int8 MatMulNBits activation precision")
    intra_op_num_threads: int = Field(ge=1, le=MAX_THREADS, description="ONNX Runtime intra-op threads")
    allow_spinning: bool = Field(default=True, description="idle pool threads busy-wait (ONNX Runtime's default)")
    graph_optimization_level: GraphLevel = Field(description="ONNX Runtime graph optimization level")
    execution_provider: ExecutionProvider = Field(default="cpu", description="cpu or a device execution provider")


def onnxruntime_params(params: OnnxRuntimeParams | Mapping[str, Any]) -> OnnxRuntimeParams:
    """``params`` validated; ``ProfileError`` names the first bad parameter and what it accepts."""
    return validate_params(OnnxRuntimeParams, params, "onnxruntime")
