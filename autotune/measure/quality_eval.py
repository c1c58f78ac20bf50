"""Glue between the tuner and quality measurement: pick the reference, tokenize the text, score each artifact once."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.hardware import Hardware
from autotune.measure.artifacts import artifact_key, prepare_artifact
from autotune.measure.busy import host_measurement_lock
from autotune.measure.quality import (
    EVAL_BYTES_PER_TOKEN,
    METHOD,
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
from autotune.profile.schema import Interval, Quality
from autotune.reporting import Reporter
from autotune.search.sources import ResolvedBackend
from autotune.store.cache import cache_dir, key_digest
from autotune.workload import Workload


class QualityEvaluator:
    """Scores artifacts against the reference: the source model, run by a backend that reads it natively.

    The reference is the highest-precision variant the tuner has: the source file itself (an
    already-quantized GGUF is its own reference; requantizing upward never beats it).
    Runtime settings (threads, batch sizes) do not change log-probabilities, so each artifact is
    scored once and cached; KV-cache quantization is a runtime setting that can, and is not scored.
    """

    def __init__(self, reference: ResolvedBackend, ref_params: Params, ref_artifact: Artifact, tokens: list[int],
                 text_hash: str, options: TuneOptions, reporter: Reporter) -> None:
        self.reference = reference
        self.ref_params = ref_params
        self.ref_artifact = ref_artifact
        self.tokens = tokens
        self.text_hash = text_hash
        self.options = options
        self.reporter = reporter
        self.cache = QualityCache()
        self.memory_limit_bytes: int | None = None
        """The scoring worker's memory guard (both models are loaded at once there)."""
        self.label = f"{reference.backend.name} {ref_artifact.precision} (the source, {reference.source.path.name})"

    @classmethod
    def create(cls, resolved: Sequence[ResolvedBackend], model_format: str, hardware: Hardware, workload: Workload,
               options: TuneOptions, reporter: Reporter) -> QualityEvaluator | None:
        """Set up the reference, or say why quality will not be measured (the proxy is used then)."""
        native = [r for r in resolved if not r.conversions and r.source.format == model_format and has_logprobs(r.backend)]
        if not native:
            reporter.warn("quality loss not measured: no backend reads the source natively and exposes log-probabilities; "
                          "effective bits per weight is used as a proxy")
            return None
        reference = native[0]
        backend = reference.backend
        try:
            text, tokens = scored_text(backend, reference.source, options)
            # The first starting point keeps the source precision: the source itself is the reference.
            ref_params = backend.starting_points(reference.source, hardware, workload)[0]
            ref_artifact, _ = prepare_artifact(backend, reference.source, ref_params)
        except AutotuneError:
            raise
        except Exception as error:  # noqa: BLE001
            reporter.warn(f"quality loss not measured: could not set up the reference: {error!r}")
            return None
        # The token count is part of the text's identity: --eval-tokens changes what is scored.
        text_hash = f"{eval_text_hash(text)}:{len(tokens)}"
        evaluator = cls(reference, ref_params, ref_artifact, tokens, text_hash, options, reporter)
        evaluator.memory_limit_bytes = hardware.worker_memory_ceiling()
        return evaluator

    def evaluate(self, r: ResolvedBackend, artifact: Artifact, params: Params) -> Quality | None:
        """Quality of ``artifact`` (cached per artifact), or None with a warning when it cannot be measured."""
        if not has_logprobs(r.backend):
            return None
        ref_key = artifact_key(self.reference.backend, self.reference.source, self.ref_params)
        var_key = artifact_key(r.backend, r.source, params)
        if var_key == ref_key:  # the reference scored against itself: zero loss by definition, nothing to run
            return self.identical(artifact)
        cache_args = (ref_key, var_key, self.text_hash, chunk_size(self.options))
        chunks = self.cache.get(*cache_args)
        if chunks is not None:
            return to_profile(summarize_quality(chunks), self.label, artifact.bits_per_weight)
        self.reporter.info(f"scoring quality of {r.backend.name} {artifact.label} on {len(self.tokens)} tokens "
                           f"against {self.label}")
        # Scoring keeps the cores busy for seconds: another tuner on this host must not measure meanwhile.
        with host_measurement_lock() if r.backend.measures_this_machine else nullcontext():
            store = self.reference_store(ref_key)
            if not (store / "complete").exists():  # the reference alone first: never two models in one worker
                stored = run_in_worker(
                    WorkerTask(store_reference, (self.reference.backend, self.ref_artifact, self.ref_params, self.tokens,
                                                 chunk_size(self.options), store)),
                    timeout_s=self.options.timeout_s * 4, memory_limit_bytes=self.memory_limit_bytes)
                if not stored.ok:  # quality_task computes it beside the variant then, as before
                    self.reporter.warn(f"the reference could not be stored ({stored.error}); scoring both at once")
            result = run_in_worker(
                WorkerTask(quality_task, (Scored(self.reference.backend, self.ref_artifact, self.ref_params),
                                          Scored(r.backend, artifact, params), self.tokens, chunk_size(self.options),
                                          store)),
                timeout_s=self.options.timeout_s * 4, memory_limit_bytes=self.memory_limit_bytes,
            )
        if not result.ok:
            self.reporter.warn(f"quality of {r.backend.name} {artifact.label} not measured: {result.error}")
            return None
        self.cache.put(*cache_args, result.value)
        return to_profile(summarize_quality(result.value), self.label, artifact.bits_per_weight)


    def reference_store(self, ref_key: dict[str, object]) -> Path:
        """Where the reference's log-probabilities for this text and chunking are kept between scores."""
        key = {"reference": ref_key, "text": self.text_hash, "chunk": chunk_size(self.options)}
        return cache_dir() / "quality" / "reference" / key_digest(key)

    def identical(self, artifact: Artifact) -> Quality:
        """The quality record of the reference itself: no loss, every top-1 token agrees (exact, not measured)."""
        exact = {"value": 0.0, "low": 0.0, "high": 0.0}
        return Quality(method=METHOD, reference=f"{self.label} — the same file, so exact without measuring",
                       bits_per_weight=artifact.bits_per_weight, kl_divergence=Interval(**exact),
                       top1_agreement=Interval(value=1.0, low=1.0, high=1.0),
                       perplexity_ratio=Interval(value=1.0, low=1.0, high=1.0), tokens=len(self.tokens))


def scored_text(backend: Backend, source: ModelSource, options: TuneOptions) -> tuple[str, list[int]]:
    """The part of the evaluation text that is scored and its tokens (``options.eval_tokens`` of them, BOS laid out).

    Only a prefix is read and tokenized, sized for the tokens wanted; it grows (doubling) only when it
    tokenizes to fewer than that and the text goes on.
    """
    max_bytes = max(options.eval_tokens * EVAL_BYTES_PER_TOKEN, 64 * 2**10)
    empty = backend.tokenize(source, "")
    while True:
        text, more = eval_text_prefix(options.eval_text, max_bytes)
        tokens = chunked_with_bos(backend.tokenize(source, text), empty, chunk_size(options))
        if len(tokens) > options.eval_tokens or not more:
            return text, tokens[: options.eval_tokens]
        max_bytes *= 2


MIN_CHUNKS = 4
"""Intervals are bootstrapped over chunks: fewer than this many would make them meaningless."""


def chunk_size(options: TuneOptions) -> int:
    """The chunk length: ``options.chunk_tokens``, shortened so the text yields at least ``MIN_CHUNKS`` chunks."""
    return max(16, min(options.chunk_tokens, options.eval_tokens // MIN_CHUNKS))


def chunked_with_bos(tokens: list[int], empty: list[int], chunk_tokens: int) -> list[int]:
    """Lay the text out so every chunk starts with BOS, as llama.cpp's perplexity tool does.

    Chunks are evaluated from a fresh context, and models such as Gemma behave erratically when a
    sequence does not start with BOS; ``empty`` (the tokenization of "") tells whether the model adds
    one and which id it is.
    """
    if len(empty) != 1 or not tokens or tokens[0] != empty[0]:
        return tokens
    bos, body = empty[0], tokens[1:]
    laid_out: list[int] = []
    for start in range(0, len(body), chunk_tokens - 1):
        laid_out += [bos, *body[start:start + chunk_tokens - 1]]
    return laid_out
