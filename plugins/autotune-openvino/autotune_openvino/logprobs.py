"""Next-token log-probabilities of a token sequence under an OpenVINO IR, for quality scoring.

Unlike the decode session, this uses the unmodified model, which returns logits for every
position; each chunk goes in one ``infer`` call from an empty cache.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import log_softmax_rows, logprob_chunks

from .compile import compile_ir
from .decoder import Decoder


def iter_logprobs(model_dir: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, one chunk of ``chunk_tokens`` at a time, each from an empty cache."""
    chunks = logprob_chunks(token_ids, chunk_tokens)
    decoder = Decoder(compile_ir(model_dir, params, last_logits_only=False))
    for chunk in chunks:
        decoder.reset()
        yield log_softmax_rows(decoder.feed(list(chunk), 0)[:-1])
