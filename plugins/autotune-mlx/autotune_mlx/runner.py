"""Loading an MLX artifact and timing generation the way mlx-lm generates (runs inside the worker).

Tokens come from mlx-lm's own ``generate_step`` (what ``mlx_lm.generate`` and ``stream_generate``
run): greedy, with the runtime settings passed through. It never stops at EOS (only
``stream_generate`` does), so every run decodes exactly the requested number of tokens.
``generate_step`` pipelines (it queues step n+1 before handing out token n) and each token is
handed out through ``.item()``, which waits for its evaluation: the time between two tokens is
the honest steady-state inter-token latency a user of mlx-lm sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from autotune.measurement import Measurement, RunTimings, summarize
from autotune.workload import Workload

from .runtime import import_mlx, import_mlx_lm

PROMPT_SEED = 0
DEFAULT_PREFILL_STEP = 2048
"""mlx-lm's default ``prefill_step_size``."""


@dataclass(frozen=True)
class RuntimeSettings:
    """The runtime parameters mlx-lm's generation takes (and the tuner searches)."""

    kv_bits: int = 16
    """16: a float KV cache; 8 or 4: quantized from the first token (``quantized_kv_start=0``)."""
    kv_group_size: int | None = 64
    prefill_step_size: int = DEFAULT_PREFILL_STEP

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``mlx_lm.generate_step`` (and ``generate``) for these settings."""
        kwargs: dict[str, Any] = {"prefill_step_size": self.prefill_step_size}
        if self.kv_bits < 16:
            # mlx-lm's default starts quantizing at token 5000; the tuned setting quantizes from the start.
            kwargs.update(kv_bits=self.kv_bits, kv_group_size=self.kv_group_size, quantized_kv_start=0)
        return kwargs


def prompt_tokens(count: int, vocab_size: int, bos: int | None) -> list[int]:
    """A fixed pseudo-random prompt of ``count`` tokens (BOS first when the model has one)."""
    rng = np.random.default_rng(PROMPT_SEED)
    tokens = rng.integers(0, vocab_size, size=count).tolist()
    if bos is not None:
        tokens[0] = bos
    return tokens


def timed_run(model: Any, prompt: list[int], decode_tokens: int, settings: RuntimeSettings) -> RunTimings:
    """Prefill ``prompt`` into a fresh KV cache, then time ``decode_tokens`` greedy decode steps."""
    mx = import_mlx()
    from mlx_lm.generate import generate_step

    marks: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        # Called with done == total right after the first token is evaluated: the prompt is in.
        if done == total and "prefill" not in marks:
            marks["prefill"] = time.perf_counter()

    stamps: list[float] = []
    started = time.perf_counter()
    # The first token ends the prefill; each further one is a decode step.
    steps = generate_step(mx.array(prompt), model, max_tokens=decode_tokens + 1,
                          prompt_progress_callback=progress, **settings.generate_kwargs())
    for _token, _logprobs in steps:
        stamps.append(time.perf_counter())
    ttft = stamps[0] - started
    return RunTimings(
        prompt_tokens=len(prompt),
        prefill_s=min(marks.get("prefill", stamps[0]), stamps[0]) - started,
        ttft_s=ttft,
        token_s=[later - earlier for earlier, later in zip(stamps, stamps[1:])],
    )


def measure(path: Path, settings: RuntimeSettings, workload: Workload) -> Measurement:
    """Load the MLX folder, warm up, time ``workload.runs`` runs (and the deep run), summarise."""
    mx = import_mlx()
    mlx_lm = import_mlx_lm()
    from mlx_lm.generate import generation_stream, wired_limit

    started = time.perf_counter()
    model, tokenizer = mlx_lm.load(str(path))  # lazy=False: every weight is evaluated (in memory) here
    load_s = time.perf_counter() - started
    vocab = int(model.args.vocab_size) if hasattr(model, "args") else int(tokenizer.vocab_size)
    bos = tokenizer.bos_token_id
    prompt = prompt_tokens(workload.prompt_tokens, vocab, bos)
    # wired_limit keeps the weights resident on Metal, as mlx-lm's own generate does (a no-op on CPU).
    with wired_limit(model, [generation_stream]):
        timed_run(model, prompt, workload.gen_tokens, settings)  # warm-up
        runs = [timed_run(model, prompt, workload.gen_tokens, settings) for _ in range(workload.runs)]
        deep = None
        if workload.deep_start > 0:
            deep = timed_run(model, prompt_tokens(workload.deep_start, vocab, bos), workload.gen_tokens, settings)
    measurement = summarize(load_s, runs, deep, workload.deep_start if deep else None)
    measurement.context["mlx_peak_memory_bytes"] = int(mx.get_peak_memory())
    measurement.context["mlx_device"] = str(mx.default_device())
    return measurement  # the worker fills peak_rss_bytes (VmHWM of this process)


def logprobs(path: Path, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
    """Float32 next-token log-probabilities, one chunk (from a fresh context) at a time."""
    mx = import_mlx()
    mlx_lm = import_mlx_lm()
    model, _tokenizer = mlx_lm.load(str(path))
    for start in range(0, len(token_ids) - 1, chunk_tokens):
        chunk = token_ids[start:start + chunk_tokens]
        if len(chunk) < 2:
            break
        logits = model(mx.array(chunk)[None])[0, :-1].astype(mx.float32)
        rows = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        yield np.array(rows)
