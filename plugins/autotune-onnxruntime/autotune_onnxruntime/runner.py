"""Running an ONNX model folder: timed decoding with onnxruntime-genai, log-probabilities with plain ONNX Runtime.

Timing goes through onnxruntime-genai, the runtime a deployment uses: it keeps the KV cache in
one preallocated buffer (``past_present_share_buffer``) and runs one session call per token.
A run mirrors the llama.cpp backend's: ``append_tokens(prompt)`` is the prefill; the first
``generate_next_token()`` only picks the greedy token from the prompt's logits (TTFT ends
there); each further ``generate_next_token()`` runs the model on the previous token and picks
the next one, and is timed on its own. EOS is ignored (``min_length = max_length``, which masks
EOS until the end), so every run decodes the same number of tokens.

Log-probabilities use a plain ``InferenceSession`` on ``model.onnx``: the whole chunk in one call
with an empty past, logits at every position.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from autotune.errors import AutotuneError, BackendUnavailable
from autotune.measurement import Measurement, RunTimings, summarize
from autotune.workload import Workload
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


def _generator(og: Any, model: Any, max_length: int) -> Any:
    search = og.GeneratorParams(model)
    search.set_search_options(do_sample=False, max_length=max_length, min_length=max_length)
    return og.Generator(model, search)


def _timed_run(og: Any, model: Any, prompt: list[int], gen_tokens: int, max_length: int, fill_chunk: int) -> RunTimings:
    """Prefill ``prompt`` (``fill_chunk`` tokens per call), pick a token, then decode ``gen_tokens`` steps."""
    generator = _generator(og, model, max_length)  # allocates the KV buffer: not part of any timing
    started = time.perf_counter()
    for start in range(0, len(prompt), fill_chunk):
        generator.append_tokens(np.asarray(prompt[start:start + fill_chunk], dtype=np.int32))
    prefill_s = time.perf_counter() - started
    generator.generate_next_token()
    ttft_s = time.perf_counter() - started
    token_s: list[float] = []
    for _ in range(gen_tokens):
        step = time.perf_counter()
        generator.generate_next_token()
        token_s.append(time.perf_counter() - step)
    if generator.is_done() and generator.token_count() < max_length:
        raise AutotuneError("onnxruntime-genai stopped generating early; the EOS mask (min_length) did not hold")
    del generator
    return RunTimings(prompt_tokens=len(prompt), prefill_s=prefill_s, ttft_s=ttft_s, token_s=token_s)


def max_length_for(model_dir: Path, workload: Workload) -> int:
    """Sequence capacity for the generator: the workload's context plus the last picked (never evaluated) token."""
    context_length = genai_decoder_config(model_dir).get("context_length") or workload.context + 1
    if workload.context > context_length:
        raise AutotuneError(
            f"the workload context ({workload.context}) exceeds the model's context length ({context_length}); "
            "lower --context"
        )
    return min(workload.context + 1, context_length)


def measure_model(model_dir: Path, params: Mapping[str, Any], workload: Workload) -> Measurement:
    """Load, warm up once, then time ``workload.runs`` runs (and one deep run when ``deep_start`` > 0)."""
    og = import_genai()
    max_length = max_length_for(model_dir, workload)
    started = time.perf_counter()
    try:
        model = load_genai_model(model_dir, params)
    except RuntimeError as error:
        raise BackendUnavailable(f"onnxruntime-genai could not load {model_dir} with {dict(params)}: {error}") from None
    load_s = time.perf_counter() - started
    prompt = prompt_tokens(model_dir, workload.prompt_tokens)
    whole = len(prompt)  # the timed prompt goes in one call, as an application would send it
    _timed_run(og, model, prompt, workload.gen_tokens, max_length, whole)  # warm-up: allocator, thread pool, caches
    runs = [_timed_run(og, model, prompt, workload.gen_tokens, max_length, whole) for _ in range(workload.runs)]
    deep = None
    if workload.deep_start > 0:
        # The cache is filled prompt-sized piece by piece: one call over thousands of tokens would hold
        # logits for all of them (tokens × vocabulary floats); only the decode steps after it are used.
        fill = prompt_tokens(model_dir, workload.deep_start)
        deep = _timed_run(og, model, fill, workload.gen_tokens, max_length, workload.prompt_tokens)
    measurement = summarize(load_s, runs, deep, workload.deep_start or None)
    measurement.context["genai_max_length"] = max_length
    del model
    return measurement


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
    if chunk_tokens < 2:
        raise ValueError("chunk_tokens must be at least 2")
    decoder = genai_decoder_config(model_dir)
    session = ort_session(Path(model_dir) / decoder["filename"], params)
    for start in range(0, len(token_ids) - 1, chunk_tokens):
        chunk = token_ids[start:start + chunk_tokens]
        if len(chunk) < 2:
            break
        (logits,) = session.run(["logits"], _feeds(session, decoder, chunk))
        yield log_softmax_rows(logits[0, :-1])
