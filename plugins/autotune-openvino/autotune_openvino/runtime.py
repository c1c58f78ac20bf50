"""Running an OpenVINO IR: compile properties, the timed decode loop, log-probabilities, tokenization.

Measurement drives a compiled stateful model directly (``ov.Core().compile_model`` and one
infer request) rather than openvino-genai's ``LLMPipeline``: every prefill and every decode step
is one ``infer`` call that is timed on its own, the compile properties are exactly the tuned
ones, and the KV cache is the stateful SDPA cache whose precision ``KV_CACHE_PRECISION`` sets
(LLMPipeline's CPU default is a paged-attention cache with its own sizing). Like LLMPipeline and
llama.cpp, the measured model computes logits for the last position only; ``logprobs`` uses
the unmodified model, which returns them for every position.

Greedy arg-max picks each next token and EOS is ignored, so runs are comparable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from autotune.errors import AutotuneError, BackendUnavailable
from autotune.measurement import Measurement, RunTimings, summarize
from autotune.workload import Workload
from autotune.workload import PROMPT_TEXT
from autotune.quality import log_softmax_rows

from .convert import IR_FILE


DEEP_FILL_CHUNK = 512
"""The deep run fills the KV cache in chunks of this many tokens, like a batched long prompt."""


def import_openvino() -> Any:
    """Import openvino, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable("openvino is not installed: pip install openvino nncf tokenizers") from None
    return openvino


def compile_properties(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``compile_model`` properties for ``params`` (threads only apply to the CPU device)."""
    properties: dict[str, Any] = {}
    device = str(params.get("device", "CPU"))
    if device.startswith("CPU") and params.get("threads"):
        properties["INFERENCE_NUM_THREADS"] = int(params["threads"])
    if params.get("performance_hint"):
        properties["PERFORMANCE_HINT"] = str(params["performance_hint"])
    if params.get("inference_precision"):
        properties["INFERENCE_PRECISION_HINT"] = str(params["inference_precision"])
    if params.get("kv_cache_precision"):
        properties["KV_CACHE_PRECISION"] = str(params["kv_cache_precision"])
    return properties


def slice_last_logits(model: Any) -> None:
    """Make ``model`` compute logits for the last position only (what LLMPipeline does), in place.

    The hidden states entering the output projection are cut to the last position, so a
    prefill does not multiply every prompt position by the vocabulary-sized weight.
    """
    import openvino.opset13 as ops

    outputs = [o for o in model.outputs if "logits" in o.get_names()]
    if not outputs:
        return
    node = outputs[0].get_node()
    for _ in range(8):
        if node.get_type_name() == "MatMul":
            hidden = node.input_value(0)
            last = ops.slice(hidden, ops.constant([-1]), ops.constant([np.iinfo(np.int64).max]),
                             ops.constant([1]), ops.constant([1]))
            node.input(0).replace_source_output(last.output(0))
            model.validate_nodes_and_infer_types()
            return
        node = node.input_value(0).get_node()


def compile_ir(model_dir: Path, params: Mapping[str, Any], *, last_logits_only: bool) -> Any:
    """Read and compile the IR in ``model_dir`` with ``params``; a failure raises ``BackendUnavailable``."""
    ov = import_openvino()
    core = ov.Core()
    device = str(params.get("device", "CPU"))
    try:
        model = core.read_model(str(model_dir / IR_FILE))
        if last_logits_only:
            slice_last_logits(model)
        return core.compile_model(model, device, compile_properties(params))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise BackendUnavailable(f"OpenVINO could not compile {model_dir} on {device} with {dict(params)}: {first}") from None


class Decoder:
    """One infer request on a stateful model: feed tokens at a position, read the last logits."""

    def __init__(self, compiled: Any) -> None:
        self.request = compiled.create_infer_request()
        self.beam_idx = np.zeros(1, dtype=np.int32)

    def reset(self) -> None:
        """Empty the KV cache."""
        self.request.reset_state()

    def feed(self, tokens: list[int], start: int) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``start...``; return the logits (positions × vocab), not copied."""
        count = len(tokens)
        self.request.infer({
            "input_ids": np.array([tokens], dtype=np.int64),
            "attention_mask": np.ones((1, start + count), dtype=np.int64),
            "position_ids": np.arange(start, start + count, dtype=np.int64)[None],
            "beam_idx": self.beam_idx,
        }, share_inputs=True, share_outputs=True)
        return self.request.get_tensor("logits").data[0]


def load_tokenizer(model_dir: Path) -> Any:
    """The HF ``tokenizer.json`` next to the IR, through the tokenizers library."""
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise AutotuneError(f"{model_dir} has no tokenizer.json; convert the model with autotune's hf-to-openvino conversion")
    return Tokenizer.from_file(str(path))


def text_tokens(tokenizer: Any, count: int) -> list[int]:
    """The first ``count`` token ids of ``PROMPT_TEXT`` (repeated as needed), with the tokenizer's BOS if it adds one."""
    tokens = list(tokenizer.encode(PROMPT_TEXT).ids)
    body = list(tokenizer.encode(PROMPT_TEXT, add_special_tokens=False).ids)
    while len(tokens) < count:
        tokens.extend(body)
    return tokens[:count]


def _timed_run(decoder: Decoder, prompt: list[int], gen_tokens: int, fill_chunk: int | None = None) -> RunTimings:
    """Prefill ``prompt`` on an empty cache, pick a token, then decode ``gen_tokens`` tokens one at a time."""
    decoder.reset()
    chunk = fill_chunk or len(prompt)
    started = time.perf_counter()
    for start in range(0, len(prompt), chunk):
        logits = decoder.feed(prompt[start:start + chunk], start)
    prefill_s = time.perf_counter() - started
    token = int(logits[-1].argmax())
    ttft_s = time.perf_counter() - started
    position = len(prompt)
    token_s: list[float] = []
    for _ in range(gen_tokens):
        step = time.perf_counter()
        token = int(decoder.feed([token], position)[-1].argmax())
        token_s.append(time.perf_counter() - step)
        position += 1
    return RunTimings(prompt_tokens=len(prompt), prefill_s=prefill_s, ttft_s=ttft_s, token_s=token_s)


def measure_ir(model_dir: Path, params: Mapping[str, Any], workload: Workload) -> Measurement:
    """Compile, warm up once, then time ``workload.runs`` runs (and one deep run when ``deep_start`` > 0)."""
    tokenizer = load_tokenizer(model_dir)
    started = time.perf_counter()
    compiled = compile_ir(model_dir, params, last_logits_only=True)
    decoder = Decoder(compiled)
    load_s = time.perf_counter() - started
    prompt = text_tokens(tokenizer, workload.prompt_tokens)
    _timed_run(decoder, prompt, workload.gen_tokens)  # warm-up: kernels for both shapes, page faults, threads
    runs = [_timed_run(decoder, prompt, workload.gen_tokens) for _ in range(workload.runs)]
    deep = None
    if workload.deep_start > 0:
        deep = _timed_run(decoder, text_tokens(tokenizer, workload.deep_start), workload.gen_tokens, DEEP_FILL_CHUNK)
    measurement = summarize(load_s, runs, deep, workload.deep_start or None)
    measurement.context["execution_devices"] = ",".join(compiled.get_property("EXECUTION_DEVICES"))
    return measurement


def iter_logprobs(model_dir: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, one chunk of ``chunk_tokens`` at a time, each from an empty cache."""
    if chunk_tokens < 2:
        raise ValueError("chunk_tokens must be at least 2")
    decoder = Decoder(compile_ir(model_dir, params, last_logits_only=False))
    for start in range(0, len(token_ids) - 1, chunk_tokens):
        chunk = token_ids[start:start + chunk_tokens]
        if len(chunk) < 2:
            break
        decoder.reset()
        yield log_softmax_rows(decoder.feed(list(chunk), 0)[:-1])
