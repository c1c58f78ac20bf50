"""Measured quality loss: next-token distributions of a variant against the reference variant.

The reference is the highest-precision variant of the same model. Both evaluate the same token ids
of an evaluation text in the same chunks (``Backend.logprobs``); a backend may yield each chunk's
rows in several consecutive blocks, and each pair of blocks is reduced at once to a few sums
(``ChunkStats``), so memory stays at one block of each whatever the vocabulary and the chunk length
(Gemma 3's vocabulary is 262,144: a 256-token chunk of float32 log-probabilities is 256 MiB, and a
chunk as deep as a 2,048-token workload would be 2 GiB — the llama.cpp plugin yields 64 MiB blocks).

Figures, each with a bootstrap interval over chunks:

- mean KL(P_ref || P_var) per token, in nats (0 = identical distributions);
- top-1 agreement: how often both pick the same most likely next token;
- perplexity ratio exp(mean NLL_var - mean NLL_ref) on the text's actual next tokens (1 = same);
- bits per byte: the variant's NLL of the text's actual tokens in bits over the UTF-8 bytes they cover,
  comparable across models and tokenizers (KL is only comparable between variants of one model).
"""

from __future__ import annotations

import codecs
import hashlib
import inspect
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from autotune.decide.stats import interval_from_replicates
from autotune.errors import AutotuneError
from autotune.files import UnreadableFile, read_prefix
from autotune.plugins.backend import Artifact, Backend, Params
from autotune.plugins.protocol import chunk_bounds
from autotune.profile.schema import Interval, Quality
from autotune.store.cache import cache_dir, key_digest, write_text_atomically

METHOD = "kl-divergence"

# Rows of a block converted to float64 at a time: about 16 MiB per temporary whatever the vocabulary.
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class ChunkStats:
    """One chunk reduced to sums (plain numbers, so it pickles and serialises to JSON).

    ``tokens`` is the number of predicted positions (chunk length - 1).
    """

    tokens: int
    kl_sum: float
    top1_agree: int
    nll_ref_sum: float
    nll_var_sum: float


@dataclass(frozen=True)
class QualityLoss:
    """Quality loss of a variant over the evaluation text, with intervals over chunks."""

    kl_divergence: Interval
    top1_agreement: Interval
    perplexity_ratio: Interval
    tokens: int
    chunks: int
    bits_per_byte: Interval | None = None


def log_softmax_rows(logits: np.ndarray, block: int = 4) -> np.ndarray:
    """Row-wise float32 log-softmax of a (tokens, vocab) logits array, for ``Backend.logprobs``.

    Writes into a new array (runtimes reuse their output buffers) ``block`` rows at a time, with one small
    temporary: a few MiB even for a 262,144-entry vocabulary, so each block stays in the CPU's cache (a
    64-row block of Gemma 3's vocabulary is 64 MiB and ran 1.4x slower).
    """
    source = np.asarray(logits)
    out = np.empty(source.shape, dtype=np.float32)
    scratch = np.empty((min(block, len(out)), source.shape[-1] if source.ndim == 2 else 0), dtype=np.float32)
    for start in range(0, len(out), block):
        rows = out[start:start + block]
        np.subtract(source[start:start + block], source[start:start + block].max(axis=1, keepdims=True), out=rows)
        exps = np.exp(rows, out=scratch[:len(rows)])
        rows -= np.log(exps.sum(axis=1, keepdims=True))
    return out


def chunk_stats(reference: np.ndarray, variant: np.ndarray, next_ids: np.ndarray) -> ChunkStats:
    """Reduce rows of one chunk: ``reference``/``variant`` are log-softmax rows, ``next_ids`` the actual next tokens.

    Sums of consecutive blocks of one chunk add up to the chunk's (``add_stats``). The terms are computed in the
    rows' own precision (float32 from ``log_softmax_rows``: converting to float64 first adds no information and
    doubled the time) and summed pairwise in float64.
    """
    rows, vocab = reference.shape
    kl_sum = 0.0
    agree = 0
    block = max(1, _BLOCK_ELEMENTS // vocab)
    for first in range(0, rows, block):
        ref = reference[first:first + block]
        var = variant[first:first + block]
        p_ref = np.exp(ref)
        with np.errstate(invalid="ignore"):
            terms = np.subtract(ref, var)
            np.multiply(p_ref, terms, out=terms)
        # Tokens the reference rules out (p = 0, log p = -inf) contribute nothing: 0 * (-inf - x) is NaN otherwise.
        terms[p_ref == 0] = 0.0
        kl_sum += float(terms.sum(dtype=np.float64))
        agree += int(np.sum(ref.argmax(axis=1) == var.argmax(axis=1)))
    picked = np.arange(rows)
    nll_ref = -float(reference[picked, next_ids].astype(np.float64).sum())
    nll_var = -float(variant[picked, next_ids].astype(np.float64).sum())
    return ChunkStats(tokens=rows, kl_sum=kl_sum, top1_agree=agree, nll_ref_sum=nll_ref, nll_var_sum=nll_var)


def self_stats(rows: np.ndarray, next_ids: np.ndarray) -> ChunkStats:
    """``chunk_stats(rows, rows, next_ids)`` without the work: no divergence, full agreement, the rows' own NLL."""
    nll = -float(rows[np.arange(len(rows)), next_ids].astype(np.float64).sum())
    return ChunkStats(tokens=len(rows), kl_sum=0.0, top1_agree=len(rows), nll_ref_sum=nll, nll_var_sum=nll)


def add_stats(first: ChunkStats, second: ChunkStats) -> ChunkStats:
    """The sums of two blocks of one chunk."""
    return ChunkStats(tokens=first.tokens + second.tokens, kl_sum=first.kl_sum + second.kl_sum,
                      top1_agree=first.top1_agree + second.top1_agree,
                      nll_ref_sum=first.nll_ref_sum + second.nll_ref_sum,
                      nll_var_sum=first.nll_var_sum + second.nll_var_sum)


class _Rows:
    """One ``logprobs`` stream read as rows: blocks of any size, taken a few rows at a time."""

    def __init__(self, blocks: Iterable[np.ndarray], name: str) -> None:
        self.blocks = iter(blocks)
        self.name = name
        self.pending: np.ndarray | None = None

    def peek(self) -> np.ndarray | None:
        """The rows not taken yet of the current block (the next block when it is used up); None at the end."""
        while self.pending is None or len(self.pending) == 0:
            block = next(self.blocks, None)
            if block is None:
                return None
            self.pending = np.asarray(block)
            if self.pending.ndim != 2:
                return self.pending  # the caller says what is wrong with it
        return self.pending

    def take(self, rows: int) -> None:
        """Drop ``rows`` rows of the current block (they were reduced)."""
        assert self.pending is not None
        self.pending = self.pending[rows:]


def compare_streams(
    reference_chunks: Iterable[np.ndarray],
    variant_chunks: Iterable[np.ndarray],
    token_ids: Sequence[int],
    chunk_tokens: int,
    first_row: int = 0,
) -> list[ChunkStats]:
    """Reduce two ``logprobs`` streams over the same ``token_ids`` to one ``ChunkStats`` per chunk.

    Each stream yields every chunk's rows from ``first_row`` on (``chunk_len - 1 - first_row`` of them; the rows
    before are context, see ``scored_rows``) in order, in one array or in several consecutive blocks (never one
    spanning two chunks); the two streams may cut blocks differently. Rows are checked against the shape the
    contract promises and dropped as soon as they are reduced.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    bounds = chunk_bounds(len(ids), chunk_tokens)
    streams = (_Rows(reference_chunks, "reference"), _Rows(variant_chunks, "variant"))
    results: list[ChunkStats] = []
    for index, (start, stop) in enumerate(bounds):
        expected_rows = stop - start - 1 - first_row
        next_ids = ids[start + 1 + first_row:stop]
        total: ChunkStats | None = None
        done = 0
        while done < expected_rows:
            reference, variant = (stream.peek() for stream in streams)
            if reference is None or variant is None:
                if done == 0 and reference is None and variant is None:
                    raise AutotuneError(f"log-probability streams stopped after {index} of {len(bounds)} chunks; "
                                        "a backend's logprobs must cover every chunk")
                shorter = "reference" if reference is None else "variant"
                raise AutotuneError(
                    f"log-probability streams disagree on the number of chunks: {shorter} ended at chunk {index} "
                    f"(row {done} of {expected_rows}; expected {len(bounds)} chunks of {chunk_tokens} tokens for "
                    f"{len(ids)} tokens); a backend's logprobs must yield every row of every chunk")
            if reference.ndim != 2 or variant.ndim != 2 or reference.shape[1] != variant.shape[1]:
                raise AutotuneError(
                    f"chunk {index}: reference log-probabilities have shape {reference.shape}, the variant's "
                    f"{variant.shape}; both must be (rows, vocab) with one vocabulary — do the two variants share "
                    "a tokenizer?")
            if done + max(len(reference), len(variant)) > expected_rows:
                longer = reference if len(reference) > len(variant) else variant
                raise AutotuneError(
                    f"chunk {index}: a block of {longer.shape} runs past the chunk's {expected_rows} rows (shape "
                    f"({expected_rows}, vocab)); do the two variants share a tokenizer, and does each chunk's "
                    "last block end with it?")
            rows = min(len(reference), len(variant))
            block_ids = next_ids[done:done + rows]
            if block_ids.min() < 0 or block_ids.max() >= reference.shape[1]:
                raise AutotuneError(
                    f"chunk {index}: token ids run from {block_ids.min()} to {block_ids.max()}, outside the "
                    f"vocabulary of {reference.shape[1]}; tokenize the text with the reference model's tokenizer")
            # The reference scored against itself (``store_reference``) gets the same block twice: no loss by
            # definition, and its own NLL without a pass over the whole vocabulary.
            stats = (self_stats(reference[:rows], block_ids) if reference is variant
                     else chunk_stats(reference[:rows], variant[:rows], block_ids))
            total = stats if total is None else add_stats(total, stats)
            for stream in streams:
                stream.take(rows)
            done += rows
        assert total is not None
        results.append(total)
    for stream in streams:
        if stream.peek() is not None:
            raise AutotuneError(
                f"log-probability streams disagree on the number of chunks: {stream.name} ran on after chunk "
                f"{len(bounds) - 1} (expected {len(bounds)} chunks of {chunk_tokens} tokens for {len(ids)} tokens); "
                "a backend's logprobs must yield one chunk's rows after another")
    return results


def scored_rows(backend: Backend, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int,
                first_row: int = 0) -> Iterator[np.ndarray]:
    """``backend.logprobs`` without each chunk's first ``first_row`` rows (the context before the scored window).

    A backend whose ``logprobs`` takes a ``first_row`` keyword leaves them out itself (llama.cpp evaluates the
    context without logits, much cheaper for a large vocabulary); for any other they are computed and dropped here.
    """
    if first_row == 0:
        yield from backend.logprobs(artifact, params, token_ids, chunk_tokens)
        return
    if "first_row" in inspect.signature(backend.logprobs).parameters:
        yield from backend.logprobs(artifact, params, token_ids, chunk_tokens, first_row=first_row)  # type: ignore[call-arg]
        return
    blocks = iter(backend.logprobs(artifact, params, token_ids, chunk_tokens))
    for start, stop in chunk_bounds(len(token_ids), chunk_tokens):
        seen = 0
        while seen < stop - start - 1:
            block = next(blocks, None)
            if block is None:
                return  # compare_streams says what is missing
            block = np.asarray(block)
            if seen + len(block) > first_row:
                yield block[max(0, first_row - seen):]
            seen += len(block)
    yield from blocks  # more than the chunks hold: compare_streams says so


def summarize_quality(
    chunks: Sequence[ChunkStats],
    confidence: float = 0.95,
    seed: int = 0,
    resamples: int = 2000,
    bytes_per_token: float | None = None,
) -> QualityLoss:
    """Token-weighted figures over all chunks, with percentile-bootstrap intervals over chunks.

    Resampling whole chunks (and recomputing ratios of sums, so longer chunks weigh more) keeps
    the dependence between neighbouring tokens inside a chunk. With one chunk the intervals have
    zero width: the text is too short to say anything about their spread.

    ``bytes_per_token`` (UTF-8 bytes of evaluation text per predicted token, ``ScoredText``) gives bits
    per byte: the point estimate is exact (every predicted token's NLL over the bytes they cover); the
    interval resamples chunks with bytes in proportion to their tokens.
    """
    if not chunks:
        raise AutotuneError("no chunks to summarise: the evaluation text tokenized to fewer than 2 tokens")
    tokens = np.array([c.tokens for c in chunks], dtype=float)
    kl = np.array([c.kl_sum for c in chunks])
    agree = np.array([c.top1_agree for c in chunks], dtype=float)
    nll_gap = np.array([c.nll_var_sum - c.nll_ref_sum for c in chunks])
    if tokens.sum() <= 0:
        raise AutotuneError("no predicted tokens to summarise")

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(chunks), size=(resamples, len(chunks)))
    weight = tokens[picks].sum(axis=1)

    def figure(sums: np.ndarray, transform: Callable[[Any], Any] | None = None) -> Interval:
        value = sums.sum() / tokens.sum()
        replicates = sums[picks].sum(axis=1) / weight
        if transform is not None:
            value, replicates = transform(value), transform(replicates)
        return interval_from_replicates(float(value), replicates, confidence)

    bits_per_byte = None
    if bytes_per_token is not None and bytes_per_token > 0:
        nll_var = np.array([c.nll_var_sum for c in chunks])
        bits_per_byte = figure(nll_var, lambda nats: nats / math.log(2) / bytes_per_token)
    return QualityLoss(
        kl_divergence=figure(kl),
        top1_agreement=figure(agree),
        perplexity_ratio=figure(nll_gap, np.exp),
        tokens=int(tokens.sum()),
        chunks=len(chunks),
        bits_per_byte=bits_per_byte,
    )


def to_profile(loss: QualityLoss, reference_label: str, bits_per_weight: float | None = None,
               chunk_tokens: int | None = None) -> Quality:
    """The profile's ``Quality`` record for a measured loss against ``reference_label``."""
    return Quality(
        method=METHOD,
        reference=reference_label,
        bits_per_weight=bits_per_weight,
        kl_divergence=loss.kl_divergence,
        top1_agreement=loss.top1_agreement,
        perplexity_ratio=loss.perplexity_ratio,
        bits_per_byte=loss.bits_per_byte,
        tokens=loss.tokens,
        chunk_tokens=chunk_tokens,
    )


@dataclass(frozen=True)
class Scored:
    """One model of a quality score: a backend, the artifact it built, and the parameters it is loaded with."""

    backend: Backend
    artifact: Artifact
    params: Params


def quality_task(reference: Scored, variant: Scored, token_ids: list[int], chunk_tokens: int,
                 reference_store: Path | None = None, first_row: int = 0) -> list[ChunkStats]:
    """Score a variant against the reference; runs inside a worker process.

    The reference's log-probabilities come from ``reference_store`` when an earlier score left a complete
    copy there (then only the variant is loaded); otherwise both models run here at once, their streams
    advancing together, and the reference's rows are written to the store for the next score. Returns
    plain dataclasses, which pickle.
    """
    references = reference_stream(reference, token_ids, chunk_tokens, first_row, reference_store)
    variants = scored_rows(variant.backend, variant.artifact, variant.params, token_ids, chunk_tokens, first_row)
    return compare_streams(references, variants, token_ids, chunk_tokens, first_row)


def store_reference(reference: Scored, token_ids: list[int], chunk_tokens: int, first_row: int,
                    store: Path) -> list[ChunkStats]:
    """Compute the reference's log-probabilities into ``store`` (in a worker of its own); score it against itself.

    Run before the first score, so no worker ever holds the reference and a variant at once: the peak is one
    model and one block, not two of each. The returned statistics (no loss, the reference's own NLL) give the
    reference's bits per byte, so the source deployed as it is has one too.
    """
    echo = _Echo(reference_stream(reference, token_ids, chunk_tokens, first_row, store))
    return compare_streams(echo.first(), echo.second(), token_ids, chunk_tokens, first_row)


class _Echo:
    """One stream read as two in lockstep, holding only the latest block.

    ``compare_streams`` takes a block of the reference, then one of the variant, in turn. ``itertools.tee`` would
    do, but it frees values 57 at a time: with 64 MiB blocks it held 3.6 GiB (measured growing 64 MiB a block).
    """

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks = iter(blocks)
        self.last: np.ndarray | None = None

    def first(self) -> Iterator[np.ndarray]:
        """The stream itself."""
        for block in self.blocks:
            self.last = block
            yield block
        self.last = None

    def second(self) -> Iterator[np.ndarray]:
        """The block ``first`` yielded last, each once; ends when ``first`` has no new one."""
        while self.last is not None:
            block, self.last = self.last, None
            yield block


def reference_stream(reference: Scored, token_ids: list[int], chunk_tokens: int, first_row: int,
                     store: Path | None) -> Iterator[np.ndarray]:
    """The reference's log-probability blocks: read back from ``store`` when complete, else computed and kept there.

    Stored exactly as the backend gives them (float32 from ``log_softmax_rows``), one file per block, so a
    stored reference scores exactly as a fresh one (float16 would move a KL of 0.004 by up to a tenth) and is
    read back one block at a time. Gemma 3's 262,144-entry vocabulary makes that 1 MiB of cache per scored
    token, written once per model, text and chunking. Written to a private folder and renamed when complete,
    so a score killed midway or a second process never reads half a reference.
    """
    if store is not None and (store / "complete").exists():
        index = 0
        while (block := store / f"block-{index:05d}.npy").exists():
            yield np.load(block)
            index += 1
        return
    partial = store.with_name(f"{store.name}.partial-{os.getpid()}") if store is not None else None
    if partial is not None:
        partial.mkdir(parents=True, exist_ok=True)
    blocks = scored_rows(reference.backend, reference.artifact, reference.params, token_ids, chunk_tokens, first_row)
    for index, rows in enumerate(blocks):
        if partial is not None:
            np.save(partial / f"block-{index:05d}.npy", np.asarray(rows))
        yield rows
    if partial is not None and store is not None:
        (partial / "complete").write_text("")
        try:
            partial.rename(store)
        except OSError:  # another process stored it first: keep theirs
            shutil.rmtree(partial, ignore_errors=True)


def eval_text_hash(text: str) -> str:
    """sha256 of the evaluation text (part of the quality cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class QualityCache:
    """Chunk statistics stored as JSON, so each (reference, variant) pair is scored once.

    The key is the two artifacts' identities (``autotune.measure.artifacts.artifact_key`` dicts), the
    evaluation text's hash and the chunk size. Raw chunk sums are stored rather than a summary,
    so intervals can be recomputed at any confidence. A missing or unreadable entry is a miss.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "quality"

    @staticmethod
    def key(reference_key: dict[str, Any], variant_key: dict[str, Any], text_hash: str, chunk_tokens: int) -> dict[str, Any]:
        """The full key, as stored beside the entry."""
        return {"reference": reference_key, "variant": variant_key, "eval_text": text_hash, "chunk_tokens": chunk_tokens}

    def path(self, reference_key: dict[str, Any], variant_key: dict[str, Any], text_hash: str, chunk_tokens: int) -> Path:
        """Where the entry for this key lives."""
        key = self.key(reference_key, variant_key, text_hash, chunk_tokens)
        return self.root / f"{key_digest(key)}.json"

    def get(self, reference_key: dict[str, Any], variant_key: dict[str, Any], text_hash: str,
            chunk_tokens: int) -> list[ChunkStats] | None:
        """The stored chunk statistics, or None when this pair was not scored yet."""
        path = self.path(reference_key, variant_key, text_hash, chunk_tokens)
        try:
            stored = json.loads(path.read_text())
            return [ChunkStats(**chunk) for chunk in stored["chunks"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is scored again and overwritten

    def put(self, reference_key: dict[str, Any], variant_key: dict[str, Any], text_hash: str, chunk_tokens: int,
            chunks: Sequence[ChunkStats]) -> Path:
        """Store chunk statistics (atomically: a reader never sees half an entry)."""
        path = self.path(reference_key, variant_key, text_hash, chunk_tokens)
        record = {"key": self.key(reference_key, variant_key, text_hash, chunk_tokens),
                  "chunks": [asdict(chunk) for chunk in chunks]}
        write_text_atomically(path, json.dumps(record, indent=1, default=str))
        return path


EVAL_BYTES_PER_TOKEN = 64
"""Bytes of evaluation text read per token to score: tokens average about four bytes of text, so sixteen times
that covers odd text too; more is read only when the prefix turns out too short."""
EVAL_TEXT_BYTES = 2**20
"""What ``load_eval_text`` reads of a text unless told otherwise (the shipped text is 20 KiB)."""


def eval_text_prefix(path: Path | None, max_bytes: int) -> tuple[str, bool]:
    """The first ``max_bytes`` of the evaluation text, cut at a line or word break, and whether the text goes on.

    Only what is scored is read: a 50 MB ``--eval-text`` was read and tokenized whole to score 256 tokens
    (33 s instead of 1.4 s). The user's file must be a regular UTF-8 text file (a FIFO or ``/dev/zero`` is one line).
    """
    if path is None:
        data = resources.files("autotune").joinpath("data/eval.txt").read_bytes()
        data, more = data[:max_bytes + 1], len(data) > max_bytes
        data = data[:max_bytes]
    else:
        path = Path(path)
        try:
            data, more = read_prefix(path, max_bytes, "evaluation text")
        except UnreadableFile as error:
            raise AutotuneError(f"{error}; pass a UTF-8 text file to --eval-text") from None
    if more:  # cut at the last break, so no word (and no UTF-8 character) is split
        cut = max(data.rfind(b" "), data.rfind(b"\n"))
        data = data[:cut] if cut > 0 else data
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not more)
    except UnicodeDecodeError:
        raise AutotuneError(f"evaluation text {path} is not UTF-8 text; pass a UTF-8 text file to --eval-text") from None
    if not text.strip():
        raise AutotuneError(f"evaluation text {path} is empty; pass a file with a few thousand words of text")
    return text, more


def load_eval_text(path: Path | None = None, max_bytes: int = EVAL_TEXT_BYTES) -> str:
    """The evaluation text: the user's ``--eval-text`` file, or the one shipped with autotune (at most ``max_bytes``)."""
    return eval_text_prefix(path, max_bytes)[0]
