"""The decode session: loading an MLX artifact and stepping it the way mlx-lm generates (runs inside the worker).

Tokens come from mlx-lm's own ``generate_step`` (what ``mlx_lm.generate`` and ``stream_generate``
run): greedy, with the runtime settings passed through. It never stops at EOS (only
``stream_generate`` does), so every run decodes exactly the requested number of tokens.
``generate_step`` pipelines (it queues step n+1 before handing out token n) and each token is
handed out through ``.item()``, which waits for its evaluation: the time one step takes is
the honest steady-state inter-token latency a user of mlx-lm sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autotune import DecodeSession, Workload

from .runtime import import_mlx, import_mlx_lm
from .settings import RuntimeSettings

PROMPT_SEED = 0


def prompt_tokens(count: int, vocab_size: int, bos: int | None) -> list[int]:
    """A fixed pseudo-random prompt of ``count`` tokens (BOS first when the model has one)."""
    rng = np.random.default_rng(PROMPT_SEED)
    tokens = rng.integers(0, vocab_size, size=count).tolist()
    if bos is not None:
        tokens[0] = bos
    return tokens


class MlxSession(DecodeSession):
    """A loaded MLX folder for ``autotune.measure_session``, stepped through mlx-lm's own ``generate_step``."""

    def __init__(self, path: Path, settings: RuntimeSettings, workload: Workload) -> None:
        self.mx = import_mlx()
        from mlx_lm.generate import generation_stream, wired_limit

        self.model, tokenizer = import_mlx_lm().load(str(path))  # lazy=False: every weight is evaluated here
        self.vocab = int(self.model.args.vocab_size) if hasattr(self.model, "args") else int(tokenizer.vocab_size)
        self.bos, self.settings, self.decode_tokens = tokenizer.bos_token_id, settings, workload.gen_tokens
        # wired_limit keeps the weights resident on Metal, as mlx-lm's own generate does (a no-op on CPU).
        self.wired = wired_limit(self.model, [generation_stream])
        self.wired.__enter__()
        self.steps: Iterator[tuple[Any, Any]] = iter(())  # (token, logprobs) from generate_step
        self.first = 0

    def prompt_tokens(self, count: int) -> list[int]:
        return prompt_tokens(count, self.vocab, self.bos)

    def prefill(self, tokens: list[int]) -> None:
        from mlx_lm.generate import generate_step

        # A fresh generator brings a fresh KV cache (the last run's goes with the old generator). Its
        # first token ends the prefill (in prefill_step_size chunks); each further one is a decode step.
        self.steps = generate_step(self.mx.array(tokens), self.model, max_tokens=self.decode_tokens + 1,
                                   **self.settings.generate_kwargs())
        self.first = int(next(self.steps)[0])

    def first_token(self) -> int:
        return self.first

    def step(self, token: int) -> int:
        return int(next(self.steps)[0])  # generate_step feeds back its own greedy pick, which is ``token``

    def close(self) -> dict[str, object]:
        self.steps = iter(())  # the last generator leaves its stream context before the wired limit is restored
        self.wired.__exit__(None, None, None)
        return {"mlx_peak_memory_bytes": int(self.mx.get_peak_memory()), "mlx_device": str(self.mx.default_device())}

