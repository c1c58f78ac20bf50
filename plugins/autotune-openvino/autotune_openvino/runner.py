"""Running an OpenVINO IR: the decode session.

Measurement drives a compiled stateful model directly (``ov.Core().compile_model`` and one
infer request) rather than openvino-genai's ``LLMPipeline``: every prefill and every decode step
is one ``infer`` call that is timed on its own, the compile properties are exactly the tuned
ones, and the KV cache is the stateful SDPA cache whose precision ``KV_CACHE_PRECISION`` sets
(LLMPipeline's CPU default is a paged-attention cache with its own sizing). Like LLMPipeline and
llama.cpp, the measured model computes logits for the last position only; ``logprobs`` uses
the unmodified model, which returns them for every position. Greedy arg-max picks each next token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune import DecodeSession, prompt_text_tokens

from .compile import compile_ir
from .decoder import Decoder

DEEP_FILL_CHUNK = 512
"""The deep run fills the KV cache in chunks of this many tokens, like a batched long prompt."""


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
