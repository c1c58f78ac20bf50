"""Running an OpenVINO IR: compile properties, the decode session, log-probabilities, tokenization.

Measurement drives a compiled stateful model directly (``ov.Core().compile_model`` and one
infer request) rather than openvino-genai's ``LLMPipeline``: every prefill and every decode step
is one ``infer`` call that is timed on its own, the compile properties are exactly the tuned
ones, and the KV cache is the stateful SDPA cache whose precision ``KV_CACHE_PRECISION`` sets
(LLMPipeline's CPU default is a paged-attention cache with its own sizing). Like LLMPipeline and
llama.cpp, the measured model computes logits for the last position only; ``logprobs`` uses
the unmodified model, which returns them for every position. Greedy arg-max picks each next token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from autotune import DecodeSession, logprob_chunks, prompt_text_tokens
from autotune.errors import AutotuneError, BackendUnavailable
from autotune.quality import log_softmax_rows

from .convert import IR_FILE
from .params import OpenVinoParams, openvino_params


DEEP_FILL_CHUNK = 512
"""The deep run fills the KV cache in chunks of this many tokens, like a batched long prompt."""


def import_openvino() -> Any:
    """Import openvino, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable("openvino is not installed: pip install openvino nncf tokenizers") from None
    return openvino


def compile_properties(params: OpenVinoParams | Mapping[str, Any]) -> dict[str, Any]:
    """The ``compile_model`` properties for ``params`` (threads only apply to the CPU device).

    A mapping is validated first (``ProfileError`` names a bad parameter).
    """
    typed = openvino_params(params)
    properties: dict[str, Any] = {}
    if typed.device.startswith("CPU") and typed.threads is not None:
        properties["INFERENCE_NUM_THREADS"] = typed.threads
    if typed.performance_hint is not None:
        properties["PERFORMANCE_HINT"] = typed.performance_hint
    if typed.inference_precision is not None:
        properties["INFERENCE_PRECISION_HINT"] = typed.inference_precision
    if typed.kv_cache_precision is not None:
        properties["KV_CACHE_PRECISION"] = typed.kv_cache_precision
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
    device = openvino_params(params).device
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


class OpenVinoSession(Decoder, DecodeSession):
    """A compiled IR for ``autotune.measure_session``: one ``infer`` per prefill piece and per step, greedy arg-max."""

    def __init__(self, model_dir: Path, params: Mapping[str, Any], tokenizer: Any, prompt_length: int) -> None:
        self.compiled = compile_ir(model_dir, params, last_logits_only=True)
        super().__init__(self.compiled)
        self.tokenizer, self.prompt_length, self.position = tokenizer, prompt_length, 0
        self.logits = np.empty((0, 0))

    def prompt_tokens(self, count: int) -> list[int]:
        return prompt_text_tokens(lambda text, bos: self.tokenizer.encode(text, add_special_tokens=bos).ids, count)

    def prefill(self, tokens: list[int]) -> None:
        # The timed prompt goes in one call; a longer (deep) fill in chunks, like a batched long prompt.
        chunk = len(tokens) if len(tokens) <= self.prompt_length else DEEP_FILL_CHUNK
        for start in range(0, len(tokens), chunk):
            self.logits = self.feed(tokens[start:start + chunk], start)
        self.position = len(tokens)

    def first_token(self) -> int:
        return int(self.logits[-1].argmax())

    def step(self, token: int) -> int:
        self.position += 1
        return int(self.feed([token], self.position - 1)[-1].argmax())

    def close(self) -> dict[str, object]:
        return {"execution_devices": ",".join(self.compiled.get_property("EXECUTION_DEVICES"))}


def iter_logprobs(model_dir: Path, params: Mapping[str, Any], token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Next-token log-probabilities of ``token_ids``, one chunk of ``chunk_tokens`` at a time, each from an empty cache."""
    chunks = logprob_chunks(token_ids, chunk_tokens)
    decoder = Decoder(compile_ir(model_dir, params, last_logits_only=False))
    for chunk in chunks:
        decoder.reset()
        yield log_softmax_rows(decoder.feed(list(chunk), 0)[:-1])
