"""Next-token log-probabilities of a token sequence under an MLX folder, for quality scoring (runs inside the worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autotune import logprob_chunks

from .runtime import import_mlx, import_mlx_lm


def logprobs(path: Path, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Float32 next-token log-probabilities, one chunk (from a fresh context) at a time."""
    mx = import_mlx()
    mlx_lm = import_mlx_lm()
    model, _tokenizer = mlx_lm.load(str(path))
    for chunk in logprob_chunks(token_ids, chunk_tokens):
        logits = model(mx.array(chunk)[None])[0, :-1].astype(mx.float32)
        rows = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        yield np.array(rows)
