"""Next-token log-probabilities of a token sequence under an ONNX model folder, for quality scoring.

Log-probabilities use a plain ``InferenceSession`` on ``model.onnx``: the whole chunk in one call
with an empty past, logits at every position.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import log_softmax_rows, logprob_chunks
from autotune.errors import AutotuneError

from .convert import genai_decoder_config
from .session import ort_session

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


def _feeds(session: Any, decoder: Mapping[str, Any], chunk: list[int]) -> dict[str, np.ndarray]:
    """Inputs for one chunk evaluated from an empty cache: ids, a full attention mask, zero-length pasts."""
    kv_shape = (1, int(decoder["num_key_value_heads"]), 0, int(decoder["head_size"]))
    feeds: dict[str, np.ndarray] = {}
    for value in session.get_inputs():
        dtype = _NUMPY_TYPES.get(value.type)
        if dtype is None:
            raise AutotuneError(f"unexpected input {value.name} of type {value.type} in {decoder['filename']}")
        if value.name == "input_ids":
            feeds[value.name] = np.asarray([chunk], dtype=dtype)
        elif value.name == "attention_mask":
            feeds[value.name] = np.ones((1, len(chunk)), dtype=dtype)
        elif value.name == "position_ids":
            feeds[value.name] = np.arange(len(chunk), dtype=dtype)[None, :]
        elif value.name.startswith("past_key_values."):
            feeds[value.name] = np.zeros(kv_shape, dtype=dtype)
        else:
            raise AutotuneError(f"cannot feed input {value.name!r} of {decoder['filename']} for log-probabilities")
    return feeds


def iter_logprobs(model_dir: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, one chunk of ``chunk_tokens`` at a time (fresh context each)."""
    chunks = logprob_chunks(token_ids, chunk_tokens)
    decoder = genai_decoder_config(model_dir)
    session = ort_session(Path(model_dir) / decoder["filename"], params)
    for chunk in chunks:
        (logits,) = session.run(["logits"], _feeds(session, decoder, chunk))
        yield log_softmax_rows(logits[0, :-1])
