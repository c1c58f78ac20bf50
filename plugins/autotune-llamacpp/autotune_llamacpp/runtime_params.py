"""How one autotune parameter set maps onto llama.cpp settings (shared by measure, predict and exports).

Parameter names (the search space): ``quant``, ``n_threads``, ``n_batch``, ``n_ubatch``,
``flash_attn``, ``type_kv``, ``use_mmap`` and, with a GPU, ``n_gpu_layers``.

``type_kv`` names one KV-cache type for both K and V. llama.cpp can only store V quantized when
flash attention is on (without it the context fails to build), so with ``flash_attn=False`` a
quantized ``type_kv`` applies to K only and V stays f16. ``kv_cache_types`` is the one place
that rule lives; measure, the memory model and every exporter use it, so what is exported is
exactly what was measured.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

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

KV_TYPES = ("f16", "q8_0", "q4_0")
"""KV-cache types searched (llama.cpp's ``-ctk``/``-ctv`` spellings)."""

KV_BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
                      "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32}
"""Bytes per cached value of each KV-cache type (block bytes / block size)."""


def kv_cache_types(params: Mapping[str, Any]) -> tuple[str, str]:
    """(K type, V type) llama.cpp really uses: a quantized V cache needs flash attention."""
    kv = str(params.get("type_kv", "f16"))
    if kv not in KV_BYTES_PER_VALUE:
        from autotune.errors import AutotuneError

        raise AutotuneError(f"unknown KV cache type {kv!r}; use one of {', '.join(KV_TYPES)}")
    flash = bool(params.get("flash_attn", False))
    return kv, kv if (flash or kv in ("f16", "f32", "bf16")) else "f16"


def effective(params: Mapping[str, Any], context: int) -> dict[str, Any]:
    """Settings as llama-cpp-python applies them: defaults filled, n_batch ≤ context, n_ubatch ≤ n_batch."""
    merged = {**LLAMA_CPP_PYTHON_DEFAULTS, **params}
    n_batch = min(int(merged["n_batch"]), context)
    type_k, type_v = kv_cache_types(merged)
    return {
        "n_ctx": context,
        # llama-cpp-python's own default when no thread count is given
        "n_threads": int(merged.get("n_threads") or max((os.cpu_count() or 1) // 2, 1)),
        "n_batch": n_batch,
        "n_ubatch": min(int(merged["n_ubatch"]), n_batch),
        "flash_attn": bool(merged["flash_attn"]),
        "type_k": type_k,
        "type_v": type_v,
        "use_mmap": bool(merged["use_mmap"]),
        "n_gpu_layers": int(merged.get("n_gpu_layers") or 0),
    }


def ggml_type_id(name: str) -> int:
    """The ``llama_cpp.GGML_TYPE_*`` id of a KV-cache type name such as ``q8_0``."""
    import llama_cpp

    return int(getattr(llama_cpp, f"GGML_TYPE_{name.upper()}"))


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
