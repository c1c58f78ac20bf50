"""Next-token log-probabilities of a token sequence under a GGUF, for quality scoring.

Each chunk is evaluated from an empty cache, as it will run (the configuration's KV-cache types and
flash attention), in pieces of a few dozen positions with logits at every position; each piece's rows
are read straight from llama.cpp's output buffer and yielded as one block.

Why pieces: llama.cpp keeps logits for every output of a batch (and its compute graph reserves as many
for a micro-batch), so one call over a 2,048-token chunk of Gemma 3 (262,144-entry vocabulary) holds
2 GiB of logits twice over. With pieces of ``LOGITS_BYTES`` per call the scoring worker's peak is the
model, its KV cache and a few such blocks, whatever the chunk length.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import log_softmax_rows, logprob_chunks, usable_cores_here
from autotune.errors import BackendUnavailable

from .gguf_info import read_gguf_info
from .loading import import_llama_cpp, load

LOGITS_BYTES = 64 * 2**20
"""float32 logits per ``llama_decode`` call: 64 rows of Gemma 3's vocabulary, 341 of SmolLM2's (capped at
``MAX_PIECE``). Smaller pieces lower the peak further but prefill more slowly."""
MAX_PIECE = 256
"""Positions per call at most, whatever the vocabulary (beyond this a larger batch gains little on a CPU)."""


def piece_tokens(n_vocab: int) -> int:
    """Positions evaluated per ``llama_decode`` call for a vocabulary of ``n_vocab`` (``LOGITS_BYTES`` of logits)."""
    return max(1, min(MAX_PIECE, LOGITS_BYTES // (4 * max(1, n_vocab))))


def iter_logprobs(model_path: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int,
                  first_row: int = 0) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, chunk by chunk, each chunk in blocks of ``piece_tokens`` rows.

    Rows before ``first_row`` of each chunk are context only: those positions are evaluated without logits
    (the output layer is most of a small model's work with a large vocabulary) and yield nothing. The last
    token of a chunk is only predicted, never evaluated. The configuration's own KV-cache types and flash
    attention are used (they change the outputs); its batch sizes are replaced by the piece size and its thread
    count by every core this process may use (neither changes them: scores are shared across both, and a score
    taken on one thread took twice as long), so the context holds ``chunk_tokens`` positions and the buffers one
    piece.
    """
    llama_cpp = import_llama_cpp()
    chunks = logprob_chunks(token_ids, chunk_tokens)  # raises on a bad chunk size before anything is loaded
    piece = piece_tokens(read_gguf_info(Path(model_path)).vocab_size)
    # swa_full (llama.cpp's default, said here because reuse depends on it): sliding-window layers keep every
    # position, so the context a chunk shares with the one before can stay in the cache.
    llm = load(model_path, {**params, "n_batch": piece, "n_ubatch": piece, "n_threads": usable_cores_here()},
               chunk_tokens, swa_full=True)
    n_vocab = llm.n_vocab()
    batch = llama_cpp.llama_batch_init(piece, 0, 1)
    memory = llama_cpp.llama_get_memory(llm.ctx)
    cached: list[int] = []
    try:
        for chunk in chunks:
            context_end = min(first_row, len(chunk) - 1)
            # Context this chunk shares with the last one (the scorer's chunks share their filler) is kept: the
            # same tokens at the same positions give the same cache, and the rest is removed. Scored rows are
            # always evaluated, since their logits are needed.
            keep = _common_prefix(cached, chunk[:context_end])
            if not (keep and llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1)):
                llama_cpp.llama_memory_clear(memory, True)
                keep = 0
            cached = chunk[:-1]
            # Context pieces (no logits), then scored pieces: none straddles first_row.
            cuts = [*range(keep, context_end, piece), *range(context_end, len(chunk) - 1, piece), len(chunk) - 1]
            for first, stop in zip(cuts, cuts[1:], strict=False):
                scored = first >= context_end
                batch.n_tokens = stop - first
                for i, position in enumerate(range(first, stop)):
                    batch.token[i] = chunk[position]
                    batch.pos[i] = position
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = scored
                status = llama_cpp.llama_decode(llm.ctx, batch)
                if status != 0:
                    raise BackendUnavailable(f"llama_decode failed with status {status} at positions {first}-{stop} "
                                             f"of a chunk of {len(chunk)} tokens")
                if scored:
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(stop - first, n_vocab))
                    yield log_softmax_rows(logits)
    finally:
        llama_cpp.llama_batch_free(batch)
        del llm


def _common_prefix(first: list[int], second: list[int]) -> int:
    """How many leading tokens ``first`` and ``second`` share."""
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            return index
    return min(len(first), len(second))
