"""Next-token log-probabilities of a token sequence under a GGUF, for quality scoring.

Each chunk is one ``llama_decode`` call from an empty cache with logits at every position; the
rows are read straight from llama.cpp's output buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import log_softmax_rows, logprob_chunks
from autotune.errors import BackendUnavailable

from .loading import import_llama_cpp, load


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
