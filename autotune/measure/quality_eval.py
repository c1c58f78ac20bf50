"""Glue between the tuner and quality measurement: pick the reference, lay out the text, score each configuration once.

A configuration is scored as it will run: its artifact and the runtime settings that change outputs
(``Backend.output_params``: a quantized KV cache, flash attention), at the depth the workload decodes at
(``lay_out_text``). Configurations that differ only in settings that cannot change outputs (threads, batch
sizes, mmap) share one score.

What depth costs: every chunk is the same filler (the text after the scored part) up to the workload's reach,
then its own window of the scored text. llama.cpp evaluates the filler once per model without logits and keeps
it in the cache for every window, so a score evaluates about reach + scored tokens positions (about 3,000 for
the default workload: 2,048 deep, 1,024 scored) and computes logits only for the scored ones; a backend that
cannot skip or keep context evaluates the filler in every chunk (4 × 2,048 positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.hardware import Hardware
from autotune.measure.artifacts import output_key, prepare_artifact
from autotune.measure.busy import host_measurement_lock
from autotune.measure.quality import (
    EVAL_BYTES_PER_TOKEN,
    ChunkStats,
    QualityCache,
    Scored,
    eval_text_hash,
    eval_text_prefix,
    quality_task,
    store_reference,
    summarize_quality,
    to_profile,
)
from autotune.measure.worker import WorkerTask, run_in_worker
from autotune.model.source import ModelSource
from autotune.options import TuneOptions
from autotune.plugins.backend import Artifact, Backend, Params, has_logprobs
from autotune.plugins.protocol import chunk_bounds
from autotune.profile.schema import Quality
from autotune.reporting import Reporter
from autotune.search.sources import ResolvedBackend
from autotune.store.cache import cache_dir, key_digest
from autotune.workload import PROMPT_TEXT, Workload

SCORING_VERSION = 2
"""How quality is scored, part of a search's scope: stored figures scored another way are measured again.
2: per configuration as it runs (KV cache included), at the workload's depth, with bits per byte."""


class QualityEvaluator:
    """Scores configurations against the reference: the source model, run by a backend that reads it natively.

    The reference is the highest-precision variant the tuner has: the source file itself (an
    already-quantized GGUF is its own reference; requantizing upward never beats it), run with the
    backend's first starting point (an f16 KV cache). Scores are cached per output key.
    """

    def __init__(self, reference: ResolvedBackend, ref_params: Params, ref_artifact: Artifact, layout: ScoredText,
                 options: TuneOptions, reporter: Reporter) -> None:
        self.reference = reference
        self.ref_params = ref_params
        self.ref_artifact = ref_artifact
        self.layout = layout
        self.options = options
        self.reporter = reporter
        self.cache = QualityCache()
        self.memory_limit_bytes: int | None = None
        """The scoring worker's memory guard."""
        self.label = f"{reference.backend.name} {ref_artifact.precision} (the source, {reference.source.path.name})"

    @classmethod
    def create(cls, resolved: Sequence[ResolvedBackend], model_format: str, hardware: Hardware, workload: Workload,
               options: TuneOptions, reporter: Reporter, text: str | None = None) -> QualityEvaluator | None:
        """Set up the reference, or say why quality will not be measured (the proxy is used then).

        ``text`` is what to score on (a user's prompts, say); None reads ``options.eval_text`` or the shipped text.
        """
        native = [r for r in resolved if not r.conversions and r.source.format == model_format and has_logprobs(r.backend)]
        if not native:
            reporter.warn("quality loss not measured: no backend reads the source natively and exposes log-probabilities; "
                          "effective bits per weight is used as a proxy")
            return None
        reference = native[0]
        backend = reference.backend
        try:
            chosen = text if text is not None else read_text(options, options.eval_tokens)
            layout = lay_out_text(backend, reference.source, chosen, options.eval_tokens, workload_reach(workload),
                                  options.chunk_tokens)
            # The first starting point keeps the source precision: the source itself is the reference.
            ref_params = backend.starting_points(reference.source, hardware, workload)[0]
            ref_artifact, _ = prepare_artifact(backend, reference.source, ref_params)
        except AutotuneError:
            raise
        except Exception as error:  # noqa: BLE001
            reporter.warn(f"quality loss not measured: could not set up the reference: {error!r}")
            return None
        evaluator = cls(reference, ref_params, ref_artifact, layout, options, reporter)
        evaluator.memory_limit_bytes = hardware.worker_memory_ceiling()
        return evaluator

    @property
    def tokens(self) -> list[int]:
        """The token ids every scored model evaluates (chunks of prefix and window)."""
        return self.layout.token_ids

    def evaluate(self, r: ResolvedBackend, artifact: Artifact, params: Params) -> Quality | None:
        """Quality of the configuration ``params`` of ``artifact`` (cached per output key), or None with a warning."""
        if not has_logprobs(r.backend):
            return None
        ref_key = output_key(self.reference.backend, self.reference.source, self.ref_params)
        var_key = output_key(r.backend, r.source, params)
        layout = self.layout
        cache_args = (ref_key, var_key, layout.key, layout.chunk_tokens)
        chunks = self.cache.get(*cache_args)
        if chunks is None:
            chunks = self._score(r, artifact, params, ref_key, var_key)
            if chunks is None:
                return None
            self.cache.put(*cache_args, chunks)
        label = self.label
        if var_key == ref_key:
            label = f"{self.label} — the same configuration, so no loss by definition"
        loss = summarize_quality(chunks, bytes_per_token=layout.bytes_per_token)
        return to_profile(loss, label, artifact.bits_per_weight, chunk_tokens=layout.chunk_tokens)

    def _score(self, r: ResolvedBackend, artifact: Artifact, params: Params, ref_key: dict[str, object],
               var_key: dict[str, object]) -> list[ChunkStats] | None:
        layout = self.layout
        what = f"{r.backend.name} {r.backend.describe(params)}"
        self.reporter.info(f"scoring quality of {what} on {layout.scored_tokens} tokens at depth {layout.depth} "
                           f"against {self.label}")
        reference = Scored(self.reference.backend, self.ref_artifact, self.ref_params)
        # Scoring keeps the cores busy for seconds: another tuner on this host must not measure meanwhile.
        with host_measurement_lock() if r.backend.measures_this_machine else nullcontext():
            store = self.reference_store(ref_key)
            timeout_s = self.options.timeout_s * 4
            if var_key == ref_key or not (store / "complete").exists():
                # The reference alone first, in a worker of its own: never two models in one worker.
                stored = run_in_worker(
                    WorkerTask(store_reference, (reference, layout.token_ids, layout.chunk_tokens, layout.first_row,
                                                 store)),
                    timeout_s=timeout_s, memory_limit_bytes=self.memory_limit_bytes)
                if stored.ok:
                    self.cache.put(ref_key, ref_key, layout.key, layout.chunk_tokens, stored.value)
                    if var_key == ref_key:
                        return list(stored.value)
                else:  # quality_task computes it beside the variant then
                    self.reporter.warn(f"the reference could not be stored ({stored.error}); scoring both at once")
            result = run_in_worker(
                WorkerTask(quality_task, (reference, Scored(r.backend, artifact, params), layout.token_ids,
                                          layout.chunk_tokens, store, layout.first_row)),
                timeout_s=timeout_s, memory_limit_bytes=self.memory_limit_bytes)
        if not result.ok:
            self.reporter.warn(f"quality of {what} not measured: {result.error}")
            return None
        return list(result.value)

    def reference_store(self, ref_key: dict[str, object]) -> Path:
        """Where the reference's log-probabilities for this layout are kept between scores."""
        key = {"reference": ref_key, "layout": self.layout.key, "chunk": self.layout.chunk_tokens}
        return cache_dir() / "quality" / "reference" / key_digest(key)


@dataclass(frozen=True)
class ScoredText:
    """The evaluation text laid out for scoring: what is predicted, at what depth, and how many bytes it covers.

    Each chunk (``chunk_tokens`` long, evaluated from an empty context) is a prefix — BOS and ``depth`` tokens of
    filler — then a window of the text; only the window's tokens are scored (rows from ``first_row`` on), so
    they are predicted as deep in the context as the workload decodes. Windows tile ``text`` from its start:
    every one of its tokens is predicted once, so its UTF-8 bytes are exactly what bits per byte divides by.
    """

    text: str
    token_ids: list[int]
    chunk_tokens: int
    first_row: int
    scored_tokens: int
    text_bytes: int
    depth: int

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes of the scored text per predicted token."""
        return self.text_bytes / self.scored_tokens if self.scored_tokens else 0.0

    @property
    def key(self) -> str:
        """What identifies this layout in the quality caches: the text, the tokens and the chunking."""
        digest = eval_text_hash(self.text + "\0" + ",".join(map(str, self.token_ids)))
        return f"{digest}:{self.chunk_tokens}:{self.first_row}"


MIN_CHUNKS = 4
"""Intervals are bootstrapped over chunks: fewer than this many would make them meaningless."""
MIN_WINDOW = 16
"""Fewest scored tokens per chunk."""


def workload_reach(workload: Workload) -> int:
    """The deepest context position the workload decodes at: its deep run's end, else its prompt and generation."""
    if workload.deep_start > 0:
        return workload.deep_start + workload.gen_tokens
    return workload.prompt_tokens + workload.gen_tokens


def lay_out_text(backend: Backend, source: ModelSource, text: str, scored_tokens: int, reach: int,
                 longest_window: int = 256) -> ScoredText:
    """Lay ``text`` out for scoring about ``scored_tokens`` of it at context depth ``reach`` (see ``ScoredText``),
    in at least ``MIN_CHUNKS`` windows of at most ``longest_window`` tokens.

    ``text`` may be the shipped evaluation text, the user's ``--eval-text`` or their prompts; only its start is
    scored (cut at a word break, so its bytes are exact), and what follows fills the context up to the depth,
    continued with the workload's prompt text when the text is too short for both.
    """
    empty = backend.tokenize(source, "")
    bos = empty[:1] if len(empty) == 1 else []
    longest = max(MIN_WINDOW, min(scored_tokens // MIN_CHUNKS, longest_window, reach - len(bos)))
    scored_text, body = fit_text(backend, source, text, len(bos), max(longest * MIN_CHUNKS, scored_tokens))
    if len(body) < 2 * MIN_CHUNKS:
        raise AutotuneError("the evaluation text is too short to score quality: it tokenized to "
                            f"{len(body)} tokens; pass a text of a few thousand words")
    # Windows as even as the text allows; a short text gets smaller ones, so there are chunks enough for an interval.
    chunks = max(MIN_CHUNKS, -(-len(body) // longest))
    window = -(-len(body) // chunks)
    # Context before each window only where the workload reaches beyond one (a short prompt needs none).
    depth = reach - len(bos) - window if reach - len(bos) > longest else 0
    filler = _without(bos, backend.tokenize(source, text[len(scored_text):])) if depth else []
    if len(filler) < depth:
        prompt = _without(bos, backend.tokenize(source, PROMPT_TEXT))
        filler += prompt * (1 + (depth - len(filler)) // max(1, len(prompt)))
    prefix = bos + filler[:depth]
    token_ids: list[int] = []
    for first in range(0, len(body), window):
        token_ids += prefix + body[first:first + window]
    chunk = len(prefix) + window
    first_row = max(0, len(prefix) - 1)
    predicted = sum(stop - start - 1 - first_row for start, stop in chunk_bounds(len(token_ids), chunk))
    return ScoredText(text=scored_text, token_ids=token_ids, chunk_tokens=chunk, first_row=first_row,
                      scored_tokens=predicted, text_bytes=len(scored_text.encode("utf-8")), depth=depth)


def fit_text(backend: Backend, source: ModelSource, text: str, bos: int, tokens: int) -> tuple[str, list[int]]:
    """The longest start of ``text`` (cut at a word break) found in a few tries that tokenizes to at most ``tokens``
    tokens besides BOS, with those tokens. Each try cuts at the byte share the last one's tokens suggest."""
    data = text.encode("utf-8")
    piece = text
    for _ in range(8):
        body = backend.tokenize(source, piece)[bos:]
        if len(body) <= tokens:
            return piece, body
        cut = int(len(piece.encode("utf-8")) * tokens / len(body) * 0.99)
        head = data[:cut]
        cut = max(head.rfind(b" "), head.rfind(b"\n"))
        head = head[:cut] if cut > 0 else head
        piece = head.decode("utf-8", errors="ignore")
    body = backend.tokenize(source, piece)[bos:]
    return piece, body[:tokens]


def _without(bos: list[int], tokens: list[int]) -> list[int]:
    return tokens[len(bos):] if bos and tokens[:1] == bos else tokens


def read_text(options: TuneOptions, scored_tokens: int) -> str:
    """The start of the evaluation text (``--eval-text`` or the shipped one), long enough for the scoring layout."""
    return eval_text_prefix(options.eval_text, max(scored_tokens * EVAL_BYTES_PER_TOKEN, 64 * 2**10))[0]


def scored_text(backend: Backend, source: ModelSource, options: TuneOptions) -> tuple[str, list[int]]:
    """The part of the evaluation text that is scored and its tokens (at most ``options.eval_tokens``, no BOS).

    Only a prefix of the file is read and tokenized, sized for the tokens wanted.
    """
    empty = backend.tokenize(source, "")
    bos = 1 if len(empty) == 1 else 0
    return fit_text(backend, source, read_text(options, options.eval_tokens), bos, options.eval_tokens)
