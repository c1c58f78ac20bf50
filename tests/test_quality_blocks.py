"""Quality scoring with bounded memory: blocks of rows, context rows left out, scores per output key, the
tuner's own peak; on the fake backend and on a tiny real GGUF through llama.cpp."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autotune.measure import tree_peak
from autotune.measure.artifacts import output_key
from autotune.measure.quality import (
    Scored,
    compare_streams,
    quality_task,
    scored_rows,
    store_reference,
    summarize_quality,
)
from autotune.measure.worker import WorkerTask, run_in_worker
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Params
from autotune.testing import FakeBackend

TOKENS = [(i * 7 + i // 5) % 64 for i in range(1000)]


def artifact(tmp_path: Path, quant: str) -> Artifact:
    path = tmp_path / f"model-{quant}.fake"
    path.write_text(quant)
    return Artifact(path=path, format="gguf", precision=quant, bits_per_weight=0.0, size_bytes=1)


class Blocky(FakeBackend):
    """The fake cutting each chunk into blocks of uneven sizes, as a large-vocabulary backend does."""

    def __init__(self, sizes: tuple[int, ...] = (7, 1, 30)) -> None:
        super().__init__()
        self.sizes = sizes

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
        for chunk in super().logprobs(artifact, params, token_ids, chunk_tokens):
            start, turn = 0, 0
            while start < len(chunk):
                size = self.sizes[turn % len(self.sizes)]
                yield chunk[start:start + size]
                start, turn = start + size, turn + 1


def stats(backend: FakeBackend, tmp_path: Path, var: str, chunk: int, first_row: int = 0) -> list[Any]:
    ref = scored_rows(backend, artifact(tmp_path, "f16"), {"quant": "f16"}, TOKENS, chunk, first_row)
    out = scored_rows(backend, artifact(tmp_path, var), {"quant": var}, TOKENS, chunk, first_row)
    return compare_streams(ref, out, TOKENS, chunk, first_row)


def test_blocks_of_any_size_score_as_whole_chunks(tmp_path: Path) -> None:
    whole = stats(FakeBackend(), tmp_path, "q4_0", 100)
    for sizes in [(7, 1, 30), (99,), (1,)]:
        blocky = stats(Blocky(sizes), tmp_path, "q4_0", 100)
        assert len(blocky) == len(whole) == 10
        for a, b in zip(blocky, whole, strict=True):
            assert (a.tokens, a.top1_agree) == (b.tokens, b.top1_agree)
            assert a.kl_sum == pytest.approx(b.kl_sum, rel=1e-9) and a.nll_var_sum == pytest.approx(b.nll_var_sum)
    # the reference cut one way, the variant another
    mixed = compare_streams(Blocky((3, 50)).logprobs(artifact(tmp_path, "f16"), {"quant": "f16"}, TOKENS, 100),
                            Blocky((11,)).logprobs(artifact(tmp_path, "q4_0"), {"quant": "q4_0"}, TOKENS, 100),
                            TOKENS, 100)
    assert [c.kl_sum for c in mixed] == pytest.approx([c.kl_sum for c in whole], rel=1e-9)


def test_context_rows_are_left_out_and_only_the_window_is_scored(tmp_path: Path) -> None:
    first_row = 60  # rows 60..98 of each 100-token chunk are scored
    windows = stats(Blocky(), tmp_path, "q4_0", 100, first_row)
    assert [c.tokens for c in windows] == [39] * 10
    ref = FakeBackend().logprobs(artifact(tmp_path, "f16"), {"quant": "f16"}, TOKENS, 100)
    var = FakeBackend().logprobs(artifact(tmp_path, "q4_0"), {"quant": "q4_0"}, TOKENS, 100)
    for chunk, (r, v) in enumerate(zip(ref, var, strict=True)):
        r, v = r[first_row:].astype(np.float64), v[first_row:].astype(np.float64)
        next_ids = np.array(TOKENS[chunk * 100 + first_row + 1:chunk * 100 + 100])
        assert windows[chunk].kl_sum == pytest.approx(np.sum(np.exp(r) * (r - v)), rel=1e-9)
        assert windows[chunk].nll_var_sum == pytest.approx(-v[np.arange(len(v)), next_ids].sum(), rel=1e-9)


def test_bits_per_byte_is_the_variants_nll_in_bits_over_the_bytes(tmp_path: Path) -> None:
    chunks = stats(FakeBackend(), tmp_path, "q8_0", 100)
    tokens = sum(c.tokens for c in chunks)
    nats = sum(c.nll_var_sum for c in chunks)
    loss = summarize_quality(chunks, bytes_per_token=3.5)
    assert loss.bits_per_byte is not None
    assert loss.bits_per_byte.value == pytest.approx(nats / math.log(2) / (3.5 * tokens))
    assert loss.bits_per_byte.low < loss.bits_per_byte.value < loss.bits_per_byte.high
    assert summarize_quality(chunks).bits_per_byte is None  # bytes unknown: no figure


def test_the_stored_reference_scores_itself_with_no_loss_and_its_own_bits(tmp_path: Path) -> None:
    backend = Blocky()
    reference = Scored(backend, artifact(tmp_path, "f16"), {"quant": "f16"})
    store = tmp_path / "store"
    itself = store_reference(reference, TOKENS, 100, 20, store)
    assert (store / "complete").exists() and all(c.kl_sum == 0.0 and c.top1_agree == c.tokens == 79 for c in itself)
    loss = summarize_quality(itself, bytes_per_token=1.0)
    assert loss.kl_divergence.high == 0.0 and loss.perplexity_ratio.value == 1.0 and loss.bits_per_byte is not None
    # a variant scored from the store equals one scored beside a fresh reference
    variant = Scored(backend, artifact(tmp_path, "q4_0"), {"quant": "q4_0"})
    assert quality_task(reference, variant, TOKENS, 100, store, 20) == quality_task(reference, variant, TOKENS, 100,
                                                                                     None, 20)


def test_settings_that_cannot_change_outputs_share_one_score() -> None:
    from autotune_llamacpp import LlamaCppBackend

    backend = LlamaCppBackend()
    source = ModelSource(path=Path("m.gguf"), format="gguf", sha256="ab" * 32)
    base = {"quant": "Q4_0", "n_threads": 2, "n_batch": 512, "n_ubatch": 512, "flash_attn": False, "type_kv": "f16",
            "use_mmap": True}
    key = output_key(backend, source, base)
    for same in ({"n_threads": 1}, {"n_batch": 2048, "n_ubatch": 128}, {"use_mmap": False}):
        assert output_key(backend, source, {**base, **same}) == key
    for other in ({"type_kv": "q4_0"}, {"type_kv": "q8_0", "flash_attn": True}, {"flash_attn": True}, {"quant": "Q8_0"}):
        assert output_key(backend, source, {**base, **other}) != key
    # a backend that declares nothing: one score per artifact, as before
    fake = FakeBackend()
    assert output_key(fake, source, {"quant": "q4_0", "threads": 1}) == output_key(fake, source, {"quant": "q4_0",
                                                                                                  "threads": 2})


def _allocate(megabytes: int) -> int:
    block = np.ones(megabytes * 2**20, dtype=np.uint8)  # touched: resident
    return int(block.sum() > 0)


def test_the_tuners_tree_peak_counts_its_workers() -> None:
    import psutil

    from autotune.measure.tree_peak import peak_rss_self

    tree_peak.reset()
    assert tree_peak.tuner_peak_tree_bytes() <= peak_rss_self()  # no worker yet: this process alone
    result = run_in_worker(WorkerTask(_allocate, (300,)), timeout_s=60)
    assert result.ok and result.peak_rss_bytes is not None and result.peak_rss_bytes > 300 * 2**20
    ours = psutil.Process().memory_info().rss
    assert tree_peak.tuner_peak_tree_bytes() >= 0.9 * ours + result.peak_rss_bytes  # the worker on top of us
    tree_peak.reset()  # the next run counts its own workers only
    assert tree_peak.tuner_peak_tree_bytes() <= peak_rss_self()


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from autotune.testing import skip_unless_runs_here
    from autotune.testing.tiny_gguf import make_tiny_gguf
    from autotune_llamacpp import LlamaCppBackend

    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    skip_unless_runs_here(LlamaCppBackend())
    return make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256, ffn=512)


def test_llama_cpp_yields_small_blocks_and_skips_the_context(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autotune_llamacpp.logprobs as logprobs
    from autotune_llamacpp import LlamaCppBackend

    backend = LlamaCppBackend()
    tokens = backend.tokenize(backend.inspect(tiny), "The history of computing is the history of machines. " * 12)
    chunk, first_row = 64, 40
    everything = list(logprobs.iter_logprobs(tiny, {"n_threads": 2}, tokens, chunk))
    monkeypatch.setattr(logprobs, "LOGITS_BYTES", 4 * 512 * 9)  # 9 rows of the 512-token vocabulary per call
    window = list(logprobs.iter_logprobs(tiny, {"n_threads": 2}, tokens, chunk, first_row))
    assert max(len(block) for block in window) == 9 and len(everything[0]) == chunk - 1
    rows = np.concatenate(window)
    expected = np.concatenate([c[first_row:] for c in everything])
    assert rows.shape == expected.shape  # only each chunk's rows from first_row on
    np.testing.assert_allclose(rows, expected, atol=2e-3)  # the same distributions, evaluated in other pieces


def test_a_quantized_kv_cache_gets_its_own_score_and_threads_share_one(tiny: Path) -> None:
    from autotune import SilentReporter, TuneOptions
    from autotune.measure.artifacts import prepare_artifact
    from autotune.measure.quality_eval import QualityEvaluator
    from autotune.search.sources import ResolvedBackend
    from autotune.testing.conformance import example_hardware
    from autotune.workload import Workload
    from autotune_llamacpp import LlamaCppBackend

    backend = LlamaCppBackend()
    resolved = ResolvedBackend(backend, backend.inspect(tiny), [])
    workload = Workload(prompt_tokens=32, gen_tokens=16, context=256, runs=1)  # decodes up to position 256
    reporter = SilentReporter()
    evaluator = QualityEvaluator.create([resolved], "gguf", example_hardware(), workload,
                                        TuneOptions(eval_tokens=128, timeout_s=120), reporter)
    assert evaluator is not None and evaluator.layout.chunk_tokens == 256 and evaluator.layout.depth > 0
    start = {**evaluator.ref_params, "n_threads": 2}
    artifact, _ = prepare_artifact(backend, resolved.source, start)

    def score(**changes: Any) -> Any:
        params = {**start, **changes}
        quality = evaluator.evaluate(resolved, artifact, params)
        assert quality is not None and quality.kl_divergence is not None and quality.bits_per_byte is not None
        return quality

    source = score()
    assert source.kl_divergence.value == 0.0 and source.top1_agreement.value == 1.0  # the reference as it runs
    assert 0 < source.bits_per_byte.value and source.chunk_tokens == 256
    kv_q4 = score(flash_attn=True, type_kv="q4_0")
    assert kv_q4.kl_divergence.value > 0  # the KV cache is scored: not the artifact's zero
    scored = sum("scoring quality" in message for message in reporter.messages)
    assert score(n_threads=1, n_batch=2048, use_mmap=False) == source  # threads, batches, mmap: the same score
    assert score(flash_attn=True, type_kv="q4_0", n_threads=1) == kv_q4
    assert sum("scoring quality" in message for message in reporter.messages) == scored  # from the cache, unscored


def test_the_profile_reports_the_tuners_own_peak_and_warns_over_the_budget(model: Path) -> None:
    import psutil

    from autotune import SilentReporter, TuneOptions, Tuner
    from autotune.budget import Budget
    from autotune.probe.machine import probe_here
    from autotune.testing.conformance import example_hardware
    from autotune.testing.inline_plugin import manager_with
    from autotune.workload import Workload

    reporter = SilentReporter()
    budget = Budget.parse("300MB", "30ms")
    result = Tuner(model, budget, Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=1, depth=0),
                   TuneOptions(trials=2, timeout_s=30, measure_quality=True, eval_tokens=64, confirm_rounds=0, seed=1),
                   manager=manager_with(FakeBackend(measures_here=True), builtins=True),
                   hardware=probe_here(measure_bandwidth=False), reporter=reporter).run()
    peak = result.profile.study["tuner_peak_tree_bytes"]
    assert peak >= psutil.Process().memory_info().rss + 20 * 2**20  # this process and a Python worker beside it
    assert any("the tuner itself" in w for w in reporter.warnings) == (peak > budget.memory_bytes)
    # A run only simulating its runtimes (a fake's formulas, another machine's hardware) tunes for a device this
    # one is not: no warning about this process's memory.
    simulated = SilentReporter()
    Tuner(model, budget, Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=1, depth=0),
          TuneOptions(trials=1, timeout_s=30, measure_quality=False, confirm_rounds=0, seed=1),
          manager=manager_with(FakeBackend()), hardware=example_hardware(cores=4), reporter=simulated).run()
    assert not any("the tuner itself" in w for w in simulated.warnings)


def test_llama_cpp_keeps_the_context_chunks_share_and_scores_as_from_scratch(tiny: Path) -> None:
    from autotune_llamacpp import LlamaCppBackend
    from autotune_llamacpp.logprobs import iter_logprobs

    backend = LlamaCppBackend()
    words = backend.tokenize(backend.inspect(tiny), "The history of computing is the history of machines. " * 12)
    prefix, windows = words[:40], [words[40 + 20 * i:60 + 20 * i] for i in range(3)]
    tokens = [t for window in windows for t in prefix + window]  # the scorer's layout: one filler, three windows
    reused = np.concatenate(list(iter_logprobs(tiny, {"n_threads": 2}, tokens, 60, first_row=39)))
    fresh = np.concatenate([c[39:] for c in iter_logprobs(tiny, {"n_threads": 2}, tokens, 60)])
    assert reused.shape == fresh.shape == (3 * 20, 512)
    np.testing.assert_allclose(reused, fresh, atol=2e-3)


def test_a_screen_compares_only_with_configurations_of_the_same_quality() -> None:
    from types import SimpleNamespace

    from autotune.measurement import Measurement
    from autotune.profile.schema import ArtifactInfo
    from autotune.record import TrialRecord
    from autotune.search.pipeline import TrialPipeline
    from autotune_llamacpp import LlamaCppBackend

    def record(number: int, tps: float, **params: Any) -> TrialRecord:
        measured = Measurement(load_s=0.1, ttft_ms=10, itl_p50_ms=1000 / tps, itl_p95_ms=1000 / tps, decode_tps=tps,
                               prefill_tps=500, peak_rss_bytes=2**28, runs=3, spread=0.01)
        return TrialRecord(number=number, status="measured", backend="llamacpp",
                           params={"quant": "Q4_0", "n_threads": 2, "flash_attn": True, "type_kv": "f16", **params},
                           artifact=ArtifactInfo(path="/m-Q4_0.gguf", format="gguf", precision="Q4_0",
                                                 bits_per_weight=4.5, size_bytes=2**27), measurement=measured)

    pipeline = TrialPipeline.__new__(TrialPipeline)
    from autotune.budget import Budget

    pipeline.context = SimpleNamespace(options=SimpleNamespace(screening=True, objective="quality", under_load=False, busy_share=1.0),  # type: ignore[assignment]
                                       budget=Budget.parse("2GB", "1s"))
    fast_q4_cache, f16_cache = record(1, 90.0, type_kv="q4_0"), record(2, 70.0)
    pipeline.full = [fast_q4_cache, f16_cache]
    backend = LlamaCppBackend()
    # A new f16-cache configuration is screened against the f16-cache one, not the faster one that loses quality.
    assert pipeline._bar(record(3, 1.0, n_threads=1), backend) is f16_cache
    assert pipeline._bar(record(4, 1.0, n_threads=1, type_kv="q4_0"), backend) is fast_q4_cache
    # The source as it is (no loss at all) bars every configuration under the quality objective: none scores better.
    from autotune.profile.schema import Interval, Quality

    source = record(5, 80.0, quant="Q4_K_M")
    source.artifact = ArtifactInfo(path="/m.gguf", format="gguf", precision="Q4_K_M", bits_per_weight=4.8,
                                   size_bytes=2**27)
    source.quality = Quality(method="kl-divergence", kl_divergence=Interval(value=0.0, low=0.0, high=0.0))
    pipeline.full = [fast_q4_cache, source]
    slow = record(6, 50.0, n_threads=1, type_kv="q8_0")
    assert pipeline._bar(slow, backend) is source
    slow.measurement = source.measurement.model_copy(update={"decode_tps": 50.0}) if source.measurement else None
    assert "no loss" in (pipeline._ruled_out(slow, source) or "")
    # A configuration faster than every bar is measured in full; under the memory objective the source bars nothing.
    assert pipeline._ruled_out(record(7, 95.0, type_kv="q8_0"), source) is None
    pipeline.context.options.objective = "memory"
    assert pipeline._bar(slow, backend) is None


def test_the_reference_scored_against_itself_holds_one_block_at_a_time(tmp_path: Path) -> None:
    import weakref

    blocks: list[weakref.ref[np.ndarray]] = []
    most = 0

    class Watched(Blocky):
        def logprobs(self, *args: Any, **kwargs: Any) -> Iterator[np.ndarray]:
            nonlocal most
            for block in super().logprobs(*args, **kwargs):
                block = np.array(block)  # a block of its own, as a runtime's output is
                blocks.append(weakref.ref(block))
                most = max(most, sum(ref() is not None for ref in blocks))
                yield block

    backend = Watched((5,))  # 20 blocks per 100-token chunk, 200 in all
    itself = store_reference(Scored(backend, artifact(tmp_path, "f16"), {"quant": "f16"}), TOKENS, 100, 0,
                             tmp_path / "store")
    assert sum(c.tokens for c in itself) == 990 and most <= 3  # itertools.tee kept 57 (64 MiB each for Gemma)
