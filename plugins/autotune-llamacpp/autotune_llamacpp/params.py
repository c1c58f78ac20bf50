"""The llama.cpp backend's parameters as one typed model: what a profile may say, and what every exporter renders.

``autotune validate`` checks a profile's ``params`` with ``LlamaCppParams`` and the exporters render from the
validated object, so a profile that validates always exports. The fields are the search space's (see
``backend``); the optional ones default to what ``llama_cpp.Llama(model_path=...)`` does out of the box.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from autotune import MAX_THREADS, validate_params

KvCacheType = Literal["f16", "q8_0", "q4_0", "f32", "bf16", "q4_1", "q5_0", "q5_1", "iq4_nl"]
"""KV-cache types llama.cpp takes (``-ctk``/``-ctv``) whose size the memory model knows; the search uses the first three."""

KV_TYPES: tuple[str, ...] = get_args(KvCacheType)[:3]
"""KV-cache types searched (llama.cpp's ``-ctk``/``-ctv`` spellings)."""

LLAMA_CPP_PYTHON_DEFAULTS: dict[str, Any] = {
    # llama_cpp.Llama(model_path=...) out of the box (llama-cpp-python 0.3.36): n_batch=512,
    # n_ubatch=512, flash_attn=False, type_k/type_v unset (llama.cpp: f16), use_mmap=True,
    # n_gpu_layers=0. n_threads defaults to cpu_count() // 2 and is set per machine.
    "n_batch": 512,
    "n_ubatch": 512,
    "flash_attn": False,
    "type_kv": "f16",
    "use_mmap": True,
    "n_gpu_layers": 0,
}

MAX_BATCH = 2**20
"""Largest logical or physical batch accepted; llama-cpp-python caps both at the context anyway."""
MAX_GPU_LAYERS = 65_536
"""Largest ``n_gpu_layers`` accepted: every layer of any model (the search offloads n_layer + 1)."""


class LlamaCppParams(BaseModel):
    """One llama.cpp configuration (``quant`` builds the artifact; the rest are runtime settings)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Optional: the runtime settings alone (measure, logprobs) do not need it, and exporters deploy profile.artifact.
    quant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,32}$",
                              description="llama.cpp file type of the artifact, e.g. Q4_K_M (the source's own: as is)")
    n_threads: int | None = Field(default=None, ge=1, le=MAX_THREADS,
                                  description="threads for generation and batch processing; null: cpu_count() // 2")
    n_batch: int = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["n_batch"], ge=1, le=MAX_BATCH,
                                    description="logical batch (capped at the context)")
    n_ubatch: int = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["n_ubatch"], ge=1, le=MAX_BATCH,
                                     description="physical micro-batch (capped at n_batch)")
    flash_attn: bool = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["flash_attn"])
    type_kv: KvCacheType = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["type_kv"],
                                 description="KV-cache type; V stays f16 without flash attention")
    use_mmap: bool = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["use_mmap"])
    n_gpu_layers: int = Field(default=LLAMA_CPP_PYTHON_DEFAULTS["n_gpu_layers"], ge=0, le=MAX_GPU_LAYERS,
                              description="layers offloaded to the GPU (0: none)")


def llamacpp_params(params: LlamaCppParams | Mapping[str, Any]) -> LlamaCppParams:
    """``params`` validated; ``ProfileError`` names the first bad parameter and what it accepts."""
    return validate_params(LlamaCppParams, params, "llamacpp")
