"""Running an ONNX model folder: the decode session, through onnxruntime-genai.

Timing goes through onnxruntime-genai, the runtime a deployment uses: it keeps the KV cache in
one preallocated buffer (``past_present_share_buffer``) and runs one session call per token.
EOS is masked (``min_length = max_length``) until the end, so every run decodes the same number
of tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import DecodeSession, Workload
from autotune.errors import AutotuneError, BackendUnavailable

from .convert import genai_decoder_config
from .session import load_genai_model
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

