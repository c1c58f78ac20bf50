"""Tokenization with a GGUF's own vocabulary, through llama.cpp (BOS as the model's metadata says)."""

from __future__ import annotations

from pathlib import Path

from autotune.errors import BackendUnavailable

from .loading import import_llama_cpp


def tokenize_text(model_path: Path, text: str) -> list[int]:
    """Token ids of ``text`` from a vocabulary-only load, with BOS when the model's metadata asks for it.

    Only the vocabulary is read (no weights, no context), so this is cheap enough for the tuner's
    own process.
    """
    llama_cpp = import_llama_cpp()
    from .llama_log import captured_llama_log, last_error

    model_params = llama_cpp.llama_model_default_params()
    model_params.vocab_only = True
    with captured_llama_log() as log:
        model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params)
    if not model:
        reason = last_error(log) or "see llama.cpp's log"
        raise BackendUnavailable(f"llama.cpp could not read the vocabulary of {model_path}: {reason}")
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        data = text.encode()
        capacity = len(data) + 16
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            # add_special=True: llama.cpp adds BOS (and EOS) exactly as the GGUF's add_bos_token/add_eos_token say.
            count = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, capacity, True, False)
            if count >= 0:
                return list(buffer[:count])
            capacity = -count  # too small: llama.cpp returns minus the size it needs
    finally:
        llama_cpp.llama_model_free(model)
