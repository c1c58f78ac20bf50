"""The llama.cpp backend against real llama-cpp-python on tiny generated GGUF models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError, BackendUnavailable
from autotune.plugins.backend import Categorical, IntRange
from autotune.plugins.protocol import kept_prefill
from autotune.store.snapshots import KeptFill
from autotune.testing import BackendConformance, measure, prepare_artifact, skip_unless_runs_here
from autotune.testing.conformance import example_hardware
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune.workload import Workload
from autotune_llamacpp import LlamaCppBackend
from autotune_llamacpp.gguf_info import read_gguf_info, tensor_bytes
from autotune_llamacpp.logprobs import iter_logprobs
from autotune_llamacpp.memory_model import decode_read_bytes
from autotune_llamacpp.quant_types import CANDIDATES, reachable_types
from autotune_llamacpp.runner import LlamaSession
from autotune_llamacpp.tensor_plan import plan_tensors

pytest.importorskip("llama_cpp")

MEMORY_TOLERANCE = 0.15
"""Predicted peak memory must be within ±15% of the worker's measured peak."""


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes and artifacts go to the test's own folder, never the user's cache."""
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def backend() -> LlamaCppBackend:
    return LlamaCppBackend()


@pytest.fixture
def runs_here(backend: LlamaCppBackend) -> None:
    """Tests that decode with llama.cpp skip, saying why, where its self-test fails (a SIGILL build)."""
    skip_unless_runs_here(backend)


@pytest.fixture
def tiny_256(tmp_path: Path) -> Path:
    return make_tiny_gguf(tmp_path / "tiny-256.gguf", hidden=256, ffn=512)


@pytest.fixture
def tiny_128(tmp_path: Path) -> Path:
    return make_tiny_gguf(tmp_path / "tiny-128.gguf", hidden=128, ffn=384)


class TestLlamaCppConformance(BackendConformance):
    @pytest.fixture
    def backend(self) -> LlamaCppBackend:
        return LlamaCppBackend()

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)


def test_inspect_reads_the_header(backend: LlamaCppBackend, tiny_256: Path) -> None:
    source = backend.inspect(tiny_256)
    assert (source.architecture, source.precision) == ("llama", "F16")
    assert source.metadata["n_layer"] == 2 and source.metadata["n_embd"] == 256
    assert source.metadata["n_head_kv"] == 2 and source.metadata["head_dim"] == 64
    assert source.metadata["vocab_size"] == 512
    assert source.metadata["tensor_types"] == {"F16": 16, "F32": 5}
    # The fast header reader agrees with gguf's own reader.
    import gguf

    reference = gguf.GGUFReader(tiny_256)
    assert source.parameters == sum(int(t.n_elements) for t in reference.tensors)
    ours = {t.name: (t.type_name, t.shape) for t in read_gguf_info(tiny_256).tensors}
    assert ours == {t.name: (t.tensor_type.name, tuple(int(d) for d in t.shape)) for t in reference.tensors}


def test_search_space(backend: LlamaCppBackend, tiny_256: Path) -> None:
    source = backend.inspect(tiny_256)
    hardware = example_hardware(cores=4)
    space = backend.search_space(source, hardware, Workload())
    assert set(space) == {"quant", "n_threads", "n_batch", "n_ubatch", "flash_attn", "type_kv", "use_mmap"}
    assert space["quant"] == Categorical(("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"))
    assert space["n_threads"] == IntRange(1, 4)
    first, second = backend.starting_points(source, hardware, Workload())
    assert first == {"quant": "F16", "n_threads": 4, "n_batch": 512, "n_ubatch": 512, "flash_attn": False,
                     "type_kv": "f16", "use_mmap": True}
    assert second == {**first, "quant": "Q4_0"}
    assert backend.untuned_params(source, hardware, Workload()) == {**first, "n_threads": 2}


def test_gpu_adds_layer_offload(backend: LlamaCppBackend, tiny_256: Path) -> None:
    from autotune.hardware import Accelerator

    hardware = example_hardware().model_copy(update={"accelerators": [Accelerator(kind="cuda", name="H200")]})
    space = backend.search_space(backend.inspect(tiny_256), hardware, Workload())
    assert space["n_gpu_layers"] == Categorical((0, 3))


def test_reachable_types_never_go_upward(backend: LlamaCppBackend, tiny_256: Path) -> None:
    assert reachable_types("F16") == ["F16", *[q for q in CANDIDATES if q != "F16"]]
    assert reachable_types("F32")[:3] == ["F32", "F16", "Q8_0"]
    assert reachable_types("Q4_K_M") == ["Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
    # A really quantized source: the tiny model requantized to Q4_0 only reaches lower types.
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_256), {"quant": "Q4_0"})
    quantized = backend.inspect(artifact.path)
    assert quantized.precision == "Q4_0"
    assert backend.quant_choices(quantized) == ["Q4_0", "Q3_K_M", "Q2_K"]
    with pytest.raises(AutotuneError, match="reachable types are Q4_0, Q3_K_M, Q2_K"):
        prepare_artifact(backend, quantized, {"quant": "Q8_0"})
    lower, built = prepare_artifact(backend, quantized, {"quant": "Q2_K"})
    assert built and lower.details["tensor_types"].get("Q2_K")


def test_quantization_really_happens_at_hidden_256(backend: LlamaCppBackend, tiny_256: Path) -> None:
    source = backend.inspect(tiny_256)
    artifact, built = prepare_artifact(backend, source, {"quant": "Q4_K_M"})
    assert built and artifact.path != tiny_256 and artifact.path.exists()
    assert artifact.details["requested"] == "Q4_K_M"
    assert artifact.details["tensor_types"] == {"Q4_K": 13, "Q6_K": 3, "F32": 5}
    assert artifact.details["fallback_tensors"] == 0
    written = read_gguf_info(artifact.path)
    assert artifact.bits_per_weight == pytest.approx(8 * written.data_bytes / written.parameters)
    assert 4.5 < artifact.bits_per_weight < 6.6
    # Using the source's own type deploys the source file itself.
    same, _ = prepare_artifact(backend, source, {"quant": "F16"})
    assert same.path == tiny_256 and same.details["source_file"] is True


def test_fallback_accounting_at_hidden_128(backend: LlamaCppBackend, tiny_128: Path) -> None:
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_128), {"quant": "Q4_K_M"})
    types = artifact.details["tensor_types"]
    assert artifact.precision == "Q4_K_M" and "Q4_K" not in types  # 128-wide rows cannot hold 256-blocks
    assert types == {"Q5_0": 13, "Q8_0": 3, "F32": 5}
    assert artifact.details["fallback_tensors"] == 15  # all but the output matrix (Q8_0 by the mix)
    written = read_gguf_info(artifact.path)
    assert artifact.bits_per_weight == pytest.approx(8 * written.data_bytes / written.parameters)
    assert artifact.bits_per_weight > 5.5  # what was written, not the nominal 4.85 of Q4_K_M


@pytest.mark.parametrize("hidden, ffn", [(256, 512), (128, 384), (80, 160)])  # 80: rows fit no block → F16
def test_tensor_plan_matches_what_llama_cpp_writes(backend: LlamaCppBackend, tmp_path: Path, hidden: int, ffn: int) -> None:
    path = make_tiny_gguf(tmp_path / f"m{hidden}.gguf", hidden=hidden, ffn=ffn)
    source = backend.inspect(path)
    info = read_gguf_info(path)
    for quant in CANDIDATES[1:]:
        artifact, _ = prepare_artifact(backend, source, {"quant": quant})
        written = {t.name: t.type_name for t in read_gguf_info(artifact.path).tensors}
        assert written == plan_tensors(info, quant).types, quant


@pytest.mark.usefixtures("runs_here")
def test_predicted_memory_matches_the_worker_peak(backend: LlamaCppBackend, tiny_256: Path) -> None:
    source = backend.inspect(tiny_256)
    workload = Workload(prompt_tokens=32, gen_tokens=8, context=256, runs=1, depth=None)  # also a deep run
    params = {"quant": "Q4_0", "n_threads": 1, "n_batch": 256, "n_ubatch": 128, "flash_attn": False,
              "type_kv": "q8_0", "use_mmap": False}
    artifact, _ = prepare_artifact(backend, source, params)
    result = measure(backend, artifact, params, workload, timeout_s=120, memory_limit_bytes=None)
    assert result.ok, result.error
    measured = result.value.peak_rss_bytes
    assert result.value.deep_depth == 248 and result.value.deep_itl_p95_ms > 0
    predicted = backend.predict(source, params, workload, example_hardware()).memory_bytes
    assert abs(predicted - measured) / measured < MEMORY_TOLERANCE, (predicted / 2**20, measured / 2**20)


@pytest.mark.usefixtures("runs_here")
def test_thread_counts_agree_on_logprobs(backend: LlamaCppBackend, tiny_256: Path) -> None:
    tokens = backend.tokenize(backend.inspect(tiny_256), "The history of computing is the history of machines. " * 2)
    assert tokens[0] == 511  # the tiny model asks for BOS (<|endoftext|>, id 511)
    one = list(iter_logprobs(tiny_256, {"n_threads": 1}, tokens, 12))
    two = list(iter_logprobs(tiny_256, {"n_threads": 2}, tokens, 12))
    assert [c.shape for c in one] == [c.shape for c in two]
    assert all(c.dtype == np.float32 and c.shape[1] == 512 for c in one)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_latency_bound_reads_every_matrix_but_the_looked_up_embedding(backend: LlamaCppBackend,
                                                                     tiny_256: Path) -> None:
    source, info = backend.inspect(tiny_256), read_gguf_info(tiny_256)
    plan = plan_tensors(info, "Q4_0")
    sizes = {t.name: tensor_bytes(t.shape, plan.types[t.name]) for t in info.tensors}
    read = decode_read_bytes(info, plan)
    assert read == sum(sizes.values()) - sizes["token_embd.weight"]  # output.weight is its own matrix here
    params = {"quant": "Q4_0", "n_threads": 2}
    workload = Workload(prompt_tokens=16, gen_tokens=8, context=256)
    no_caches = example_hardware().model_copy(update={"cpu": example_hardware().cpu.model_copy(update={"caches": []})})
    bound = backend.predict(source, params, workload, no_caches).latency_lower_bound_ms
    assert bound == pytest.approx(read / (2 * 20e9) * 1000)
    # The example machine's 2 MiB of L2 holds this model whole, and a GPU's bandwidth is not the probe's.
    assert backend.predict(source, params, workload, example_hardware()).latency_lower_bound_ms is None
    assert backend.predict(source, {**params, "n_gpu_layers": 3}, workload, no_caches).latency_lower_bound_ms is None


def test_quantized_v_cache_needs_flash_attention(backend: LlamaCppBackend) -> None:
    assert "kv=q8_0/f16 (V f16: needs fa)" in backend.describe({"quant": "Q4_0", "n_threads": 2, "type_kv": "q8_0"})
    assert "kv=q8_0 " in backend.describe({"quant": "Q4_0", "n_threads": 2, "type_kv": "q8_0", "flash_attn": True})


def test_availability_reports_the_build(backend: LlamaCppBackend) -> None:
    availability = backend.availability()
    assert availability.available and availability.version
    assert "avx2" in availability.details.get("cpu_features", "") or availability.details.get("cpu_features") is not None
    assert availability.details["gpu_offload"] in ("true", "false")


def test_a_source_deployed_as_it_is_shows_its_own_mix_not_a_fallback(backend: LlamaCppBackend, tiny_128: Path,
                                                                     tmp_path: Path) -> None:
    """A Q4_K_M file someone else made, at rows K-quants cannot hold: autotune quantized nothing, so nothing fell back."""
    built, _ = prepare_artifact(backend, backend.inspect(tiny_128), {"quant": "Q4_K_M"})
    theirs = tmp_path / "theirs-Q4_K_M.gguf"
    theirs.write_bytes(built.path.read_bytes())
    source = backend.inspect(theirs)
    as_is, _ = prepare_artifact(backend, source, {"quant": source.precision})
    assert as_is.path == theirs and "fallback" not in as_is.details
    assert as_is.label == "Q4_K_M (the source file as is: 15/21 tensors in Q5_0/Q8_0)"


def test_a_source_with_a_255_character_name_is_quantized(backend: LlamaCppBackend, tiny_256: Path, tmp_path: Path) -> None:
    long = tmp_path / ("m" * 250 + ".gguf")
    long.write_bytes(tiny_256.read_bytes())
    artifact, built = prepare_artifact(backend, backend.inspect(long), {"quant": "Q4_0"})
    assert built and artifact.path.exists() and len(artifact.path.name) <= 255


def test_a_truncated_gguf_says_what_llama_cpp_found(backend: LlamaCppBackend, tiny_256: Path, tmp_path: Path) -> None:
    """llama.cpp's own error lines, not "see llama.cpp's log" (a log nobody is shown)."""
    from autotune_llamacpp.tokens import tokenize_text

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_256.read_bytes()[: tiny_256.stat().st_size // 2])
    with pytest.raises(BackendUnavailable) as raised:
        tokenize_text(truncated, "hello")
    message = str(raised.value)
    assert "not within the file bounds, model is corrupted or incomplete" in message and "see llama.cpp" not in message


@pytest.mark.usefixtures("runs_here")
@pytest.mark.parametrize("flash_attn", [False, True])
def test_a_loaded_deep_fill_decodes_as_the_prefilled_one(tiny_256: Path, tmp_path: Path, flash_attn: bool) -> None:
    """The deep run's fill, saved once and loaded by the next measurement, gives the same greedy continuation
    (the same cache); a file that holds other tokens or is not a context is refused and leaves the cache empty."""
    params = {"n_threads": 2, "n_batch": 64, "n_ubatch": 32, "flash_attn": flash_attn, "type_kv": "q8_0"}
    snapshot = tmp_path / "fill.ctx"

    def continuation(session: LlamaSession, tokens: list[int]) -> list[int]:
        session.prefill(tokens)
        picked = [session.first_token()]
        for _ in range(8):
            picked.append(session.step(picked[-1]))
        return picked

    fresh = LlamaSession(tiny_256, params, 256)
    fill = fresh.prompt_tokens(200)
    fresh.reset()
    kept_prefill(fresh, fill, KeptFill(snapshot, tail=1))  # prefilled, then saved but the last token
    assert snapshot.stat().st_size > 0
    expected = [fresh.first_token()]
    for _ in range(8):
        expected.append(fresh.step(expected[-1]))
    fresh.reset()
    assert continuation(fresh, fill) == expected  # the saved cache is the one a plain prefill makes

    loaded = LlamaSession(tiny_256, params, 256)
    assert not loaded.load_context(snapshot, fill[:-2])  # other tokens: refused
    assert not loaded.load_context(tmp_path / "missing.ctx", fill[:-1])
    (tmp_path / "junk.ctx").write_bytes(b"not a context")
    assert not loaded.load_context(tmp_path / "junk.ctx", fill[:-1])
    assert continuation(loaded, fill) == expected  # a refused load left the cache empty
    loaded.reset()
    assert loaded.load_context(snapshot, fill[:-1])
    assert loaded.llm.n_tokens == len(fill) - 1
    assert continuation(loaded, fill[-1:]) == expected


def test_fills_are_kept_per_cache_contents_and_never_for_a_sliding_window(backend: LlamaCppBackend, tiny_256: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = prepare_artifact(backend, backend.inspect(tiny_256), {"quant": "F16"})[0]
    workload = Workload(context=256)
    params = {"quant": "F16", "n_threads": 2, "n_batch": 256, "n_ubatch": 128, "type_kv": "f16", "flash_attn": False}
    kept = backend.kept_fill(artifact, params, workload)
    assert kept is not None and kept.tail == 128
    # Threads and batch size leave the cache's contents alone; KV types and the depth do not.
    assert backend.kept_fill(artifact, {**params, "n_threads": 1, "n_batch": 512}, workload).path == kept.path
    assert backend.kept_fill(artifact, {**params, "type_kv": "q8_0"}, workload).path != kept.path
    assert backend.kept_fill(artifact, params, workload.model_copy(update={"depth": 100})).path != kept.path
    # llama.cpp saves only the window of a sliding-window cache: a loaded one would decode faster than the deployment.
    monkeypatch.setattr(type(backend.header(tiny_256)), "sliding_window", property(lambda self: 512))
    assert backend.kept_fill(artifact, params, workload) is None
