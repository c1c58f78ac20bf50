"""Quality loss against the reference variant, on the fake backend's 64-token vocabulary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import autotune.measure.quality as quality
from autotune.errors import AutotuneError
from autotune.measure.artifacts import artifact_key
from autotune.measure.quality import (
    ChunkStats,
    QualityCache,
    Scored,
    chunk_stats,
    compare_streams,
    eval_text_hash,
    load_eval_text,
    quality_task,
    summarize_quality,
    to_profile,
)
from autotune.measure.worker import WorkerTask, run_in_worker
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact
from autotune.profile.schema import Quality
from autotune.testing import FakeBackend

EVAL_TEXT = load_eval_text()


def test_shipped_eval_text_is_long_and_varied() -> None:
    assert len(EVAL_TEXT) >= 15_000
    assert "```python" in EVAL_TEXT and "def " in EVAL_TEXT  # code
    assert "\n- " in EVAL_TEXT and "\n1. " in EVAL_TEXT  # a bulleted and a numbered list


BACKEND = FakeBackend()
TOKENS = BACKEND.tokenize(None, EVAL_TEXT)  # type: ignore[arg-type]  # the fake ignores the source


def artifact(tmp_path: Path, quant: str) -> Artifact:
    path = tmp_path / f"model-{quant}.fake"
    path.write_text(quant)
    return Artifact(path=path, format="gguf", precision=quant, bits_per_weight=0.0, size_bytes=1)


def score(tmp_path: Path, ref_quant: str, var_quant: str, chunk_tokens: int = 256,
          tokens: list[int] = TOKENS) -> list[ChunkStats]:
    reference = BACKEND.logprobs(artifact(tmp_path, ref_quant), {"quant": ref_quant}, tokens, chunk_tokens)
    variant = BACKEND.logprobs(artifact(tmp_path, var_quant), {"quant": var_quant}, tokens, chunk_tokens)
    return compare_streams(reference, variant, tokens, chunk_tokens)


def test_a_variant_against_itself_loses_nothing(tmp_path: Path) -> None:
    loss = summarize_quality(score(tmp_path, "q4_0", "q4_0"))
    assert loss.kl_divergence.value == loss.kl_divergence.high == 0.0
    assert loss.top1_agreement.value == loss.top1_agreement.low == 1.0
    assert loss.perplexity_ratio.value == loss.perplexity_ratio.low == loss.perplexity_ratio.high == 1.0
    assert loss.tokens == len(TOKENS) - loss.chunks  # every chunk predicts all but its first token
    assert loss.chunks == -(-(len(TOKENS) - 1) // 256)


def test_lower_precision_loses_more(tmp_path: Path) -> None:
    q8 = summarize_quality(score(tmp_path, "f16", "q8_0"))
    q4 = summarize_quality(score(tmp_path, "f16", "q4_0"))
    assert 0 < q8.kl_divergence.value < q4.kl_divergence.value
    assert q8.kl_divergence.high < q4.kl_divergence.low  # not just by chance: the intervals separate
    assert q4.top1_agreement.value < q8.top1_agreement.value < 1


def test_perplexity_ratio_on_text_the_reference_wrote(tmp_path: Path) -> None:
    # The fake's "model" knows nothing of English, so on the eval text its perplexities mean little.
    # On text sampled from the reference itself, E[NLL_var - NLL_ref] per token is exactly the KL.
    (table,) = BACKEND.logprobs(artifact(tmp_path, "f16"), {"quant": "f16"}, [*range(64), 0], 65)
    rng = np.random.default_rng(7)
    tokens = [0]
    for _ in range(20_000):
        tokens.append(int(rng.choice(64, p=np.exp(table[tokens[-1]].astype(np.float64)) /
                                     np.exp(table[tokens[-1]].astype(np.float64)).sum())))
    q8 = summarize_quality(score(tmp_path, "f16", "q8_0", 256, tokens))
    q4 = summarize_quality(score(tmp_path, "f16", "q4_0", 256, tokens))
    assert 1 < q8.perplexity_ratio.low and q8.perplexity_ratio.high < q4.perplexity_ratio.low
    for loss in (q8, q4):
        log_ratio = np.log(loss.perplexity_ratio.value)
        assert log_ratio == pytest.approx(loss.kl_divergence.value, rel=0.15)


@pytest.mark.parametrize("chunk_tokens", [2, 17, 256, 4096])
def test_chunked_figures_equal_a_direct_computation(tmp_path: Path, chunk_tokens: int) -> None:
    # One chunk over the whole text, reduced here with plain numpy: row j predicts token j + 1.
    tokens = TOKENS[:5000]
    ids = np.array(tokens)
    (ref,) = BACKEND.logprobs(artifact(tmp_path, "f16"), {"quant": "f16"}, tokens, len(tokens))
    (var,) = BACKEND.logprobs(artifact(tmp_path, "q4_0"), {"quant": "q4_0"}, tokens, len(tokens))
    ref, var = ref.astype(np.float64), var.astype(np.float64)
    # Chunks do not overlap, so the first token of each chunk is never predicted.
    predicted = np.arange(1, len(ids)) % chunk_tokens != 0
    rows = np.flatnonzero(predicted)
    kl = np.sum(np.exp(ref[rows]) * (ref[rows] - var[rows]))
    agree = np.sum(ref[rows].argmax(1) == var[rows].argmax(1))
    nll_ref = -ref[rows, ids[rows + 1]].sum()
    nll_var = -var[rows, ids[rows + 1]].sum()

    loss = summarize_quality(score(tmp_path, "f16", "q4_0", chunk_tokens, tokens))
    assert loss.tokens == len(rows)
    assert loss.kl_divergence.value == pytest.approx(kl / len(rows), rel=1e-9)
    assert loss.top1_agreement.value == pytest.approx(agree / len(rows), rel=1e-12)
    assert loss.perplexity_ratio.value == pytest.approx(np.exp((nll_var - nll_ref) / len(rows)), rel=1e-9)


def test_large_vocabularies_are_reduced_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 50, 1000)) * 2
    ref, var = (x - np.logaddexp.reduce(x, axis=1, keepdims=True) for x in logits.astype(np.float32))
    ids = rng.integers(0, 1000, 50)
    whole = chunk_stats(ref, var, ids)
    monkeypatch.setattr(quality, "_BLOCK_ELEMENTS", 7 * 1000)  # 7 rows at a time: 8 blocks, the last short
    blocked = chunk_stats(ref, var, ids)
    assert blocked.kl_sum == pytest.approx(whole.kl_sum, rel=1e-12)
    assert (blocked.top1_agree, blocked.tokens) == (whole.top1_agree, whole.tokens) == (blocked.top1_agree, 50)


def test_tokens_the_reference_rules_out_do_not_give_nan() -> None:
    with np.errstate(divide="ignore"):
        ref = np.log(np.array([[0.5, 0.5, 0.0]], dtype=np.float32))
    var = np.log(np.array([[0.25, 0.25, 0.5]], dtype=np.float32))
    stats = chunk_stats(ref, var, np.array([0]))
    assert stats.kl_sum == pytest.approx(np.log(2))
    assert stats.nll_var_sum == pytest.approx(np.log(4))


def test_intervals_contain_the_point_estimates(tmp_path: Path) -> None:
    loss = summarize_quality(score(tmp_path, "f16", "q5_1", 128), confidence=0.9, seed=3)
    for figure in (loss.kl_divergence, loss.top1_agreement, loss.perplexity_ratio):
        assert figure.low < figure.value < figure.high
    single = summarize_quality(score(tmp_path, "f16", "q5_1", 128)[:1])
    assert single.kl_divergence.low == single.kl_divergence.value == single.kl_divergence.high


def test_mismatched_streams_are_clear_errors(tmp_path: Path) -> None:
    ids = TOKENS[:100]
    good = lambda: BACKEND.logprobs(artifact(tmp_path, "f16"), {"quant": "f16"}, ids, 32)  # noqa: E731
    wide = (np.zeros((len(chunk), 65), np.float32) for chunk in good())
    with pytest.raises(AutotuneError, match=r"chunk 0: .*\(31, 65\).*tokenizer"):
        compare_streams(good(), wide, ids, 32)
    with pytest.raises(AutotuneError, match="number of chunks: variant ended"):
        compare_streams(good(), list(good())[:2], ids, 32)
    with pytest.raises(AutotuneError, match="stopped after 2 of 4 chunks"):
        compare_streams(list(good())[:2], list(good())[:2], ids, 32)
    with pytest.raises(AutotuneError, match="outside the vocabulary of 64"):
        compare_streams(good(), good(), [*ids[:40], 64, *ids[41:]], 32)
    with pytest.raises(AutotuneError, match="no chunks"):
        summarize_quality([])


def test_to_profile(tmp_path: Path) -> None:
    loss = summarize_quality(score(tmp_path, "f16", "q8_0"))
    record = to_profile(loss, "fake f16", bits_per_weight=8.5)
    assert record.method == "kl-divergence" and record.reference == "fake f16"
    assert record.kl_divergence == loss.kl_divergence and record.tokens == loss.tokens
    assert Quality.model_validate_json(record.model_dump_json()) == record


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    source = ModelSource(path=tmp_path / "m.gguf", format="gguf", sha256="ab" * 32)
    ref_key = artifact_key(BACKEND, source, {"quant": "f16", "threads": 2})
    var_key = artifact_key(BACKEND, source, {"quant": "q4_0", "threads": 1})
    text_hash = eval_text_hash(EVAL_TEXT)
    chunks = score(tmp_path, "f16", "q4_0")

    cache = QualityCache()
    assert cache.root == tmp_path / "cache" / "quality"
    assert cache.get(ref_key, var_key, text_hash, 256) is None
    path = cache.put(ref_key, var_key, text_hash, 256, chunks)
    assert path.parent == cache.root and json.loads(path.read_text())["key"]["chunk_tokens"] == 256
    assert QualityCache().get(ref_key, var_key, text_hash, 256) == chunks
    # The runtime setting (threads) is not part of an artifact's identity; everything in the key is.
    assert cache.get(artifact_key(BACKEND, source, {"quant": "f16", "threads": 1}), var_key, text_hash, 256) == chunks
    assert cache.get(ref_key, var_key, text_hash, 128) is None
    assert cache.get(ref_key, var_key, eval_text_hash(EVAL_TEXT + "x"), 256) is None
    assert cache.get(var_key, ref_key, text_hash, 256) is None
    path.write_text("{damaged")
    assert cache.get(ref_key, var_key, text_hash, 256) is None


def test_load_eval_text_from_a_user_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("Ein kurzer Text über Messungen.\n", encoding="utf-8")
    assert load_eval_text(mine) == "Ein kurzer Text über Messungen.\n"
    with pytest.raises(AutotuneError, match="not found.*--eval-text"):
        load_eval_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(AutotuneError, match="empty"):
        load_eval_text(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(AutotuneError, match="not UTF-8"):
        load_eval_text(tmp_path / "binary.txt")


def test_quality_task_runs_in_a_worker(tmp_path: Path) -> None:
    ids = TOKENS[:3000]
    task = WorkerTask(quality_task, (Scored(BACKEND, artifact(tmp_path, "f16"), {"quant": "f16"}),
                                     Scored(BACKEND, artifact(tmp_path, "q4_0"), {"quant": "q4_0"}), ids, 200))
    result = run_in_worker(task, timeout_s=60)
    assert result.ok, result.error
    assert result.value == score(tmp_path, "f16", "q4_0", 200, ids)
    assert all(isinstance(chunk, ChunkStats) for chunk in result.value) and len(result.value) == 15


class WithBos(FakeBackend):
    """The fake with a BOS (id 0) in front of every text, as Gemma's and llama's tokenizers have."""

    def tokenize(self, source: Any, text: str) -> list[int]:
        return [0, *super().tokenize(source, text)]


@pytest.mark.parametrize("backend", [WithBos(), BACKEND], ids=["bos", "no-bos"])
def test_every_window_is_scored_at_the_workloads_depth(backend: FakeBackend) -> None:
    from autotune.measure.quality_eval import MIN_CHUNKS, lay_out_text

    layout = lay_out_text(backend, None, EVAL_TEXT, scored_tokens=1024, reach=2048)  # type: ignore[arg-type]
    bos = [0] if isinstance(backend, WithBos) else []
    chunks = [layout.token_ids[i:i + layout.chunk_tokens] for i in range(0, len(layout.token_ids), layout.chunk_tokens)]
    assert len(chunks) == MIN_CHUNKS and layout.chunk_tokens == 2048  # as deep as the workload decodes
    prefix = chunks[0][:layout.first_row + 1]
    assert all(chunk[:len(prefix)] == prefix for chunk in chunks) and prefix[:len(bos)] == bos
    windows = [token for chunk in chunks for token in chunk[len(prefix):]]
    assert windows == backend.tokenize(None, layout.text)[len(bos):]  # type: ignore[arg-type]  # the text, tiled
    assert EVAL_TEXT.startswith(layout.text) and layout.text_bytes == len(layout.text.encode())
    # the fake's tokens are bytes: every byte of the scored text is predicted once, after the depth's context
    assert layout.scored_tokens == len(windows) == layout.text_bytes and layout.bytes_per_token == 1.0
    assert 250 <= 2048 - len(bos) - layout.depth <= 256 and 1000 <= layout.scored_tokens <= 1024  # 4 windows


def test_a_shallow_workload_or_a_short_text_still_gives_several_chunks() -> None:
    from autotune.measure.quality_eval import MIN_CHUNKS, lay_out_text

    shallow = lay_out_text(WithBos(), None, EVAL_TEXT, scored_tokens=1024, reach=192)  # type: ignore[arg-type]
    assert shallow.depth == 0 and shallow.first_row == 0 and shallow.chunk_tokens <= 192  # BOS and a window each
    short = lay_out_text(WithBos(), None, "A few words of text, no more than that.", 1024, 2048)  # type: ignore[arg-type]
    assert len(short.token_ids) // short.chunk_tokens >= MIN_CHUNKS - 1 and short.depth > 0
    with pytest.raises(AutotuneError, match="too short"):
        lay_out_text(WithBos(), None, "Hi.", 1024, 2048)  # type: ignore[arg-type]


def test_the_reference_is_computed_once_and_scores_exactly_as_a_fresh_one(tmp_path: Path) -> None:
    from autotune.measure.quality import Scored, compare_streams, quality_task
    from autotune.testing import FakeBackend

    calls = tmp_path / "reference-calls"

    class CountingReference(FakeBackend):
        def logprobs(self, artifact: Any, params: Any, token_ids: list[int], chunk_tokens: int) -> Any:
            if params["quant"] == "f16":
                with calls.open("a") as log:
                    log.write("x")
            return super().logprobs(artifact, params, token_ids, chunk_tokens)

    backend = CountingReference()
    artifact = Artifact(path=tmp_path / "m", format="gguf", precision="f16", bits_per_weight=16, size_bytes=1)
    tokens = [i % 50 for i in range(130)]
    store = tmp_path / "store"
    scores = [quality_task(Scored(backend, artifact, {"quant": "f16"}), Scored(backend, artifact, {"quant": quant}), tokens,
                           32, store)
              for quant in ("q8_0", "q4_0", "q4_0")]
    assert calls.read_text() == "x" and (store / "complete").exists()  # computed once, then read back
    fresh = compare_streams(backend.logprobs(artifact, {"quant": "f16"}, tokens, 32),
                            backend.logprobs(artifact, {"quant": "q4_0"}, tokens, 32), tokens, 32)
    assert scores[1] == scores[2] == fresh
