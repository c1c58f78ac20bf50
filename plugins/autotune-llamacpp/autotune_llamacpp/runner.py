"""Running a GGUF with llama-cpp-python: a decode session, next-token log-probabilities, tokenization.

``LlamaSession`` runs inside autotune's worker process (llama_cpp is imported there);
``autotune.measure_session`` drives and times it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from autotune import DecodeSession, logprob_chunks, prompt_text_tokens
from autotune.errors import BackendUnavailable
from autotune.quality import log_softmax_rows

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


def iter_logprobs(model_path: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, one chunk of ``chunk_tokens`` at a time.

    Each chunk is evaluated from an empty cache in one ``llama_decode`` call asking for logits
    at every position; rows are read straight from llama.cpp's output buffer, so nothing larger
    than one chunk × vocabulary is ever held (Gemma 3's vocabulary is 262,144).
    """
    llama_cpp = import_llama_cpp()
    chunks = logprob_chunks(token_ids, chunk_tokens)  # raises on a bad chunk size before anything is loaded
    # The whole chunk goes in one batch; the output buffer then holds chunk × vocab floats.
    llm = load(model_path, {**params, "n_batch": chunk_tokens}, chunk_tokens)
    n_vocab = llm.n_vocab()
    batch = llama_cpp.llama_batch_init(chunk_tokens, 0, 1)
    memory = llama_cpp.llama_get_memory(llm.ctx)
    try:
        for chunk in chunks:
            llama_cpp.llama_memory_clear(memory, True)
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            status = llama_cpp.llama_decode(llm.ctx, batch)
            if status != 0:
                raise BackendUnavailable(f"llama_decode failed with status {status} on a chunk of {len(chunk)} tokens")
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(len(chunk), n_vocab))
            yield log_softmax_rows(logits[:-1])
    finally:
        llama_cpp.llama_batch_free(batch)
        del llm


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
