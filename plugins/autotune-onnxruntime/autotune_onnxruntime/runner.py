"""Running an ONNX model folder: decoding with onnxruntime-genai, log-probabilities with plain ONNX Runtime.

Timing goes through onnxruntime-genai, the runtime a deployment uses: it keeps the KV cache in
one preallocated buffer (``past_present_share_buffer``) and runs one session call per token.
EOS is masked (``min_length = max_length``) until the end, so every run decodes the same number
of tokens.

Log-probabilities use a plain ``InferenceSession`` on ``model.onnx``: the whole chunk in one call
with an empty past, logits at every position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from autotune import DecodeSession, Workload, logprob_chunks
from autotune.errors import AutotuneError, BackendUnavailable
from autotune.quality import log_softmax_rows

from .convert import genai_decoder_config
from .session import load_genai_model, ort_session
from .tokens import prompt_tokens


def import_genai() -> Any:
    """Import onnxruntime_genai, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import onnxruntime_genai
    except ImportError:
        raise BackendUnavailable("onnxruntime-genai is not installed: pip install onnxruntime-genai") from None
    return onnxruntime_genai


class GenaiSession(DecodeSession):
    """One onnxruntime-genai model for ``autotune.measure_session``: a fresh generator (and KV buffer) per run."""

    def __init__(self, model_dir: Path, params: Mapping[str, Any], workload: Workload) -> None:
        self.og = import_genai()
        self.model_dir = model_dir
        self.max_length = max_length_for(model_dir, workload)
        try:
            self.model = load_genai_model(model_dir, params)
        except RuntimeError as error:
            raise BackendUnavailable(f"onnxruntime-genai could not load {model_dir} with {dict(params)}: {error}") from None
        # The timed prompt goes in one call, as an application would send it. The deep fill goes in
        # prompt-sized pieces: one call over thousands of tokens would hold logits for all of them
        # (tokens × vocabulary floats).
        self.fill_chunk = workload.prompt_tokens
        self.generator: Any = None

    def prompt_tokens(self, count: int) -> list[int]:
        return prompt_tokens(self.model_dir, count)

    def reset(self) -> None:
        self._end_run()  # the previous generator's KV buffer goes before the next one is allocated
        search = self.og.GeneratorParams(self.model)
        search.set_search_options(do_sample=False, max_length=self.max_length, min_length=self.max_length)
        self.generator = self.og.Generator(self.model, search)

    def prefill(self, tokens: list[int]) -> None:
        for start in range(0, len(tokens), self.fill_chunk):
            self.generator.append_tokens(np.asarray(tokens[start:start + self.fill_chunk], dtype=np.int32))

    def first_token(self) -> int:
        self.generator.generate_next_token()  # only picks from the prompt's logits (TTFT ends here)
        return int(self.generator.get_next_tokens()[0])

    def step(self, token: int) -> int:
        self.generator.generate_next_token()  # runs the model on its last pick (``token``), picks the next
        return int(self.generator.get_next_tokens()[0])

    def close(self) -> dict[str, object]:
        self._end_run()
        return {"genai_max_length": self.max_length}

    def _end_run(self) -> None:
        if self.generator is not None and self.generator.is_done() and self.generator.token_count() < self.max_length:
            raise AutotuneError("onnxruntime-genai stopped generating early; the EOS mask (min_length) did not hold")
        self.generator = None


def max_length_for(model_dir: Path, workload: Workload) -> int:
    """Sequence capacity for the generator: the workload's context plus the last picked (never evaluated) token."""
    context_length = genai_decoder_config(model_dir).get("context_length") or workload.context + 1
    if workload.context > context_length:
        raise AutotuneError(
            f"the workload context ({workload.context}) exceeds the model's context length ({context_length}); "
            "lower --context"
        )
    return min(workload.context + 1, context_length)


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
