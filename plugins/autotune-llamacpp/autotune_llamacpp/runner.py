"""Running a GGUF with llama-cpp-python: the decode session.

``LlamaSession`` runs inside autotune's worker process (llama_cpp is imported there);
``autotune.measure_session`` drives and times it.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotune import DecodeSession, prompt_text_tokens

from .loading import greedy, import_llama_cpp, load


class LlamaSession(DecodeSession):
    """One loaded GGUF for ``autotune.measure_session``: ``Llama.eval`` and greedy picks from llama.cpp's logits."""

    def __init__(self, model_path: Path, params: Mapping[str, Any], context: int) -> None:
        self.llama_cpp = import_llama_cpp()
        self.llm = load(model_path, params, context)
        self.n_vocab = self.llm.n_vocab()

    def prompt_tokens(self, count: int) -> list[int]:
        return prompt_text_tokens(lambda text, bos: self.llm.tokenize(text.encode(), add_bos=bos, special=False), count)

    def reset(self) -> None:
        self.llm.reset()  # n_tokens = 0; the next eval removes every cached position from 0 on

    def prefill(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)  # in n_batch batches: a deep fill goes in like a long prompt

    def first_token(self) -> int:
        return greedy(self.llama_cpp, self.llm, self.n_vocab)

    def step(self, token: int) -> int:
        self.llm.eval([token])
        return greedy(self.llama_cpp, self.llm, self.n_vocab)

    def save_context(self, path: Path) -> bool:
        count = self.llm.n_tokens
        tokens = (self.llama_cpp.llama_token * count)(*self.llm.input_ids[:count].tolist())
        return bool(self.llama_cpp.llama_state_seq_save_file(self.llm.ctx, os.fsencode(path), 0, tokens, count))

    def load_context(self, path: Path, tokens: list[int]) -> bool:
        if not path.is_file():
            return False
        saved = (self.llama_cpp.llama_token * len(tokens))()
        count = ctypes.c_size_t(0)
        # llama.cpp refuses a file of another model, cache layout or runtime version, or with more tokens than asked.
        read = self.llama_cpp.llama_state_seq_load_file(self.llm.ctx, os.fsencode(path), 0, saved, len(tokens),
                                                        ctypes.byref(count))
        if not read or count.value != len(tokens) or list(saved) != tokens:
            self.llama_cpp.llama_memory_clear(self.llama_cpp.llama_get_memory(self.llm.ctx), True)
            self.llm.reset()
            return False
        self.llm.input_ids[:len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)  # Llama.eval continues at this position
        return True
