"""One infer request on a compiled stateful IR: the step both the decode session and the log-probabilities take."""

from __future__ import annotations

from typing import Any

import numpy as np


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
