"""The measurement protocol, written once: what a backend supplies and what the core does with it.

A backend wraps one loaded model in a ``DecodeSession`` (its runtime's calls only: evaluate
tokens, pick the greedy next one). ``measure_session`` then runs the same protocol for every
backend, the way a chat loop drives a model:

1. load the model (``load_s``);
2. one warm-up run, not recorded: first-call costs (kernels for both shapes, page faults,
   thread pools, allocators) would otherwise land in the first timed run. It prefills the whole
   prompt but decodes only ``WARMUP_TOKENS``: every decode step reads all the weights, so after a
   few steps nothing is left to warm, and the rest would only cost time;
3. ``workload.runs`` timed runs, each on an empty cache: prefill the prompt (``prefill_s``),
   pick the first token (``ttft_s``), then ``gen_tokens`` decode steps timed one by one;
4. the spread check: when decode speed differs across those runs by more than
   ``SPREAD_LIMIT`` (relative), as many runs again are timed and all of them summarised;
5. one deep run (when ``workload.deep_start`` > 0): the cache filled to that depth like a long
   prompt, then the same decode steps; only those steps are used. A backend whose session can save and
   load its cache passes a ``KeptFill`` (``autotune.store.snapshots``): the fill is then prefilled once, and
   later measurements whose cache would hold the same values load it but for its last micro-batch.

EOS is ignored: decode speed does not depend on which token comes out, and stopping early
would make runs incomparable. Log-probabilities are cut into chunks by ``logprob_chunks``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from autotune.measurement import Measurement, RunTimings, relative_spread, summarize
from autotune.store.snapshots import KeptFill, mark_used, writing
from autotune.workload import PROMPT_TEXT, Workload

WARMUP_TOKENS = 8
"""Decode steps of the warm-up run (at most ``gen_tokens``)."""
SPREAD_LIMIT = 0.15
"""Relative spread of decode tok/s across the timed runs ((max − min) / median) above which they are
re-measured. Even separate processes measuring one configuration differ by ±5–10% on the 2-core
development VM (see ``confirm``), and runs inside one process by less; a wider spread means something
else took the machine during a run (another process, a frequency change)."""

Clock = Callable[[], float]


class DecodeSession(Protocol):
    """One loaded model, driven token by token; what a backend implements for ``measure_session``.

    A session may subclass this class to inherit the defaults of ``reset`` and ``close``.
    """

    def prompt_tokens(self, count: int) -> list[int]:
        """A fixed prompt of ``count`` token ids (the same on every call)."""
        ...

    def reset(self) -> None:
        """Empty the KV cache for a new run (not timed); by default nothing, for runtimes that start each
        prefill on a fresh cache."""
        return None  # a body, so subclasses may inherit this default

    def prefill(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` on the empty cache (after the loaded positions, if ``load_context`` loaded any), in
        pieces the runtime chooses for a long fill."""
        ...

    def first_token(self) -> int:
        """The greedy token after the prefill."""
        ...

    def step(self, token: int) -> int:
        """Decode ``token`` (the one just picked) and return the greedy next token."""
        ...

    def close(self) -> dict[str, object]:
        """Release what must be released and return what the runtime reports about the runs (devices used,
        its own peak memory) for ``Measurement.context``; by default nothing."""
        return {}

    def save_context(self, path: Path) -> bool:
        """Write the positions in the KV cache, with the tokens they hold, to ``path``; False when the runtime
        cannot (the default). Only the deep run calls it, during its fill, when the backend passed
        ``measure_session`` a ``KeptFill``."""
        return False

    def load_context(self, path: Path, tokens: list[int]) -> bool:
        """Fill the empty cache from ``path`` if it holds exactly ``tokens`` (as ``save_context`` wrote them), so the
        next ``prefill`` continues after them; else leave the cache empty and return False (the default)."""
        return False


def timed_run(session: DecodeSession, prompt: list[int], gen_tokens: int,
              clock: Clock = time.perf_counter, kept: KeptFill | None = None) -> RunTimings:
    """Prefill ``prompt`` on an empty cache, pick a token, then decode ``gen_tokens`` tokens one at a time.

    With ``kept`` the prompt's cache is loaded from it when it holds that prompt (``kept_prefill``): the prefill's
    time then means nothing, and only the decode steps may be used (the deep run's case).
    """
    session.reset()
    started = clock()
    if kept is None:
        session.prefill(prompt)
    else:
        kept_prefill(session, prompt, kept)
    prefill_s = clock() - started
    token = session.first_token()
    ttft_s = clock() - started
    token_s: list[float] = []
    for _ in range(gen_tokens):
        step = clock()
        token = session.step(token)
        token_s.append(clock() - step)
    return RunTimings(prompt_tokens=len(prompt), prefill_s=prefill_s, ttft_s=ttft_s, token_s=token_s)


def kept_prefill(session: DecodeSession, tokens: list[int], kept: KeptFill) -> None:
    """Prefill ``tokens`` on the empty cache: all but the last ``kept.tail`` loaded from ``kept.path`` when it holds
    them, else prefilled and saved there for the next measurement; the tail is always prefilled (it leaves the
    memory caches as a prefill does, and gives the logits a saved cache does not hold)."""
    if len(tokens) < 2:  # nothing to keep: the one token is the tail
        session.prefill(tokens)
        return
    cut = len(tokens) - min(kept.tail, len(tokens) - 1)  # at least one token kept, at least one prefilled
    context, tail = tokens[:cut], tokens[cut:]
    if session.load_context(kept.path, context):
        mark_used(kept.path)
    else:
        session.prefill(context)
        with suppress(OSError), writing(kept.path) as temporary:  # a full disk costs the next fill, not this one
            session.save_context(temporary)
    session.prefill(tail)


def extra_runs(runs: list[RunTimings], planned: int) -> int:
    """Timed runs to add after ``runs``: ``planned`` more when their decode speeds spread beyond ``SPREAD_LIMIT``.

    One batch rather than one run at a time until the spread narrows: max − min never shrinks as
    runs are added, so such a loop would almost always run to its limit anyway. More runs do not
    hide the outlier (``spread`` still shows it) but lessen its weight in the medians and percentiles.
    """
    speeds = [len(run.token_s) / sum(run.token_s) for run in runs]
    return planned if relative_spread(speeds) > SPREAD_LIMIT else 0


def measure_session(load: Callable[[], DecodeSession], workload: Workload, *,
                    clock: Clock = time.perf_counter, kept: KeptFill | None = None) -> Measurement:
    """Load a session and measure it by the protocol in this module's docstring.

    ``clock`` is the timer (tests pass a fake one). ``Measurement.extra_runs`` says how many timed
    runs the spread check added; ``peak_rss_bytes`` is left to the worker (VmHWM of its process).
    ``kept`` is where the deep run's fill is kept (``autotune.kept_fill`` of what sets the cache's contents), for a
    session that implements ``save_context`` and ``load_context`` and whose ``prefill`` continues after cached
    positions; None: the fill is prefilled every time.
    """
    started = clock()
    session = load()
    load_s = clock() - started
    try:
        prompt = session.prompt_tokens(workload.prompt_tokens)
        timed_run(session, prompt, min(WARMUP_TOKENS, workload.gen_tokens), clock)  # warm-up
        runs = [timed_run(session, prompt, workload.gen_tokens, clock) for _ in range(workload.runs)]
        added = extra_runs(runs, workload.runs)
        runs += [timed_run(session, prompt, workload.gen_tokens, clock) for _ in range(added)]
        deep = None
        if workload.deep_start > 0:
            deep = timed_run(session, session.prompt_tokens(workload.deep_start), workload.gen_tokens, clock, kept)
    finally:
        context = session.close()
    measurement = summarize(load_s, runs, deep, workload.deep_start or None)
    measurement.extra_runs = added
    measurement.context.update(context)
    return measurement


def prompt_text_tokens(encode: Callable[[str, bool], list[int]], count: int) -> list[int]:
    """The first ``count`` token ids of ``PROMPT_TEXT``, repeated as needed.

    ``encode(text, first)`` tokenizes ``text``, with BOS (as the tokenizer adds it) only when ``first``.
    """
    tokens = list(encode(PROMPT_TEXT, True))
    body = list(encode(PROMPT_TEXT, False))
    while len(tokens) < count:
        tokens.extend(body)
    return tokens[:count]


def chunk_bounds(n_tokens: int, chunk_tokens: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``n_tokens`` ids: the one chunking rule, for the backends and the scorer.

    Chunks do not overlap; a chunk of one token predicts nothing, so every chunk has at least two (a last
    single token is left out). A list, not a generator: a bad ``chunk_tokens`` raises before anything is loaded.
    """
    if chunk_tokens < 2:
        raise ValueError(f"chunk_tokens must be at least 2, got {chunk_tokens}")
    return [(start, min(start + chunk_tokens, n_tokens)) for start in range(0, n_tokens - 1, chunk_tokens)]


def logprob_chunks(token_ids: list[int], chunk_tokens: int) -> list[list[int]]:
    """``token_ids`` in chunks of ``chunk_tokens`` (``chunk_bounds``), each to be evaluated from an empty cache."""
    return [token_ids[start:stop] for start, stop in chunk_bounds(len(token_ids), chunk_tokens)]
