"""How one autotune parameter set maps onto llama.cpp settings (shared by measure, predict and exports).

Parameter names (the search space): ``quant``, ``n_threads``, ``n_batch``, ``n_ubatch``,
``flash_attn``, ``type_kv``, ``use_mmap`` and, with a GPU, ``n_gpu_layers``; their types, bounds and
defaults are ``params.LlamaCppParams``.

``type_kv`` names one KV-cache type for both K and V. llama.cpp can only store V quantized when
flash attention is on (without it the context fails to build), so with ``flash_attn=False`` a
quantized ``type_kv`` applies to K only and V stays f16. ``kv_cache_types`` is the one place
that rule lives; measure, the memory model and every exporter use it, so what is exported is
exactly what was measured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .params import LlamaCppParams, llamacpp_params

KV_BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
                      "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32}
"""Bytes per cached value of each KV-cache type (block bytes / block size)."""


def kv_cache_types(type_kv: str, flash_attn: bool) -> tuple[str, str]:
    """(K type, V type) llama.cpp really uses: a quantized V cache needs flash attention."""
    return type_kv, type_kv if (flash_attn or type_kv in ("f16", "f32", "bf16")) else "f16"


def effective(params: LlamaCppParams | Mapping[str, Any], context: int) -> dict[str, Any]:
    """Settings as llama-cpp-python applies them: defaults filled, n_batch ≤ context, n_ubatch ≤ n_batch.

    A mapping is validated first (``ProfileError`` names a bad parameter), so measure, predict and the
    exporters all read the same typed values.
    """
    typed = llamacpp_params(params)
    n_batch = min(typed.n_batch, context)
    type_k, type_v = kv_cache_types(typed.type_kv, typed.flash_attn)
    return {
        "n_ctx": context,
        # llama-cpp-python's own default when no thread count is given
        "n_threads": typed.n_threads or max((os.cpu_count() or 1) // 2, 1),
        "n_batch": n_batch,
        "n_ubatch": min(typed.n_ubatch, n_batch),
        "flash_attn": typed.flash_attn,
        "type_k": type_k,
        "type_v": type_v,
        "use_mmap": typed.use_mmap,
        "n_gpu_layers": typed.n_gpu_layers,
    }


GGML_TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
"""``enum ggml_type`` ids (ggml/include/ggml.h) of the KV-cache types, as ``Llama(type_k=...)`` takes them.
Written out because llama-cpp-python 0.3.36 has no ``GGML_TYPE_BF16`` constant, and so exports render without it."""


def ggml_type_id(name: str) -> int:
    """The ``enum ggml_type`` id of a KV-cache type name such as ``q8_0``."""
    return GGML_TYPE_IDS[name]


def llama_kwargs(model_path: str, params: Mapping[str, Any], context: int) -> dict[str, Any]:
    """Keyword arguments for ``llama_cpp.Llama`` reproducing ``params`` at ``context`` tokens."""
    settings = effective(params, context)
    return {
        "model_path": model_path,
        "n_ctx": settings["n_ctx"],
        "n_threads": settings["n_threads"],
        "n_threads_batch": settings["n_threads"],
        "n_batch": settings["n_batch"],
        "n_ubatch": settings["n_ubatch"],
        "flash_attn": settings["flash_attn"],
        "type_k": ggml_type_id(settings["type_k"]),
        "type_v": ggml_type_id(settings["type_v"]),
        "use_mmap": settings["use_mmap"],
        "n_gpu_layers": settings["n_gpu_layers"],
        "logits_all": False,
        "seed": 0,
        "verbose": False,
    }
