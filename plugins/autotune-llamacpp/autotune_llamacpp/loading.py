"""Loading llama-cpp-python and a GGUF into it, and the greedy pick from its logits.

Shared by the decode session (``runner``), the log-probabilities (``logprobs``), tokenization
(``tokens``) and the self-test. llama_cpp is imported only when one of them runs, so the plugin
loads (and says what to install) without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import BackendUnavailable

from .runtime_params import llama_kwargs


def import_llama_cpp() -> Any:
    """Import llama_cpp, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise BackendUnavailable("llama-cpp-python is not installed: pip install llama-cpp-python") from None
    return llama_cpp


def load(model_path: Path, params: Mapping[str, Any], context: int, **overrides: Any) -> Any:
    """A ``llama_cpp.Llama`` configured from ``params``; a model llama.cpp rejects raises ``BackendUnavailable``."""
    llama_cpp = import_llama_cpp()
    kwargs = {**llama_kwargs(str(model_path), params, context), **overrides}
    try:
        return llama_cpp.Llama(**kwargs)
    except ValueError as error:  # llama-cpp-python reports load/context failures as ValueError
        raise BackendUnavailable(f"llama.cpp could not load {model_path} with {dict(params)}: {error}") from None


def greedy(llama_cpp: Any, llm: Any, n_vocab: int) -> int:
    """Arg-max of the last evaluated position's logits, read in place from llama.cpp's buffer."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    return int(logits.argmax())
