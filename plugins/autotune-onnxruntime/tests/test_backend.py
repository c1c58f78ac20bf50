"""The onnxruntime backend on the tiny HF model: conformance suite plus ONNX-specific behaviour."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import autotune_onnxruntime.backend as backend_module
from autotune.errors import AutotuneError
from autotune.hardware import Accelerator
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Backend, Params
from autotune.testing import BackendConformance, prepare_artifact
from autotune.testing.conformance import example_hardware
from autotune.workload import Workload
from autotune_onnxruntime import OnnxRuntimeBackend, artifact_settings, weight_bytes, weight_summary
from autotune_onnxruntime.memory import rope_bytes

TEXT = "The quick brown fox jumps over the lazy dog. " * 3


class TestOnnxRuntimeConformance(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return OnnxRuntimeBackend()

    @pytest.fixture
    def model_path(self, tiny_hf: Path) -> Path:
        return tiny_hf

    @pytest.fixture
    def artifact(self, backend: Backend, source: ModelSource, params: Params, shared_cache: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Artifact:
        # One cache for the session: the int4 model is built once, not once per test.
        monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))
        artifact, _ = prepare_artifact(backend, source, params)
        return artifact


@pytest.fixture
def backend() -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend()


@pytest.fixture
def source(backend: OnnxRuntimeBackend, tiny_hf: Path) -> ModelSource:
    return backend.inspect(tiny_hf)


@pytest.fixture
def cpu_params() -> Params:
    return {"precision": "int4", "block_size": 32, "accuracy_level": 4, "intra_op_num_threads": 1,
            "allow_spinning": False, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_provider": "cpu"}


@pytest.fixture
def int4(backend: OnnxRuntimeBackend, source: ModelSource, cpu_params: Params, shared_cache: Path,
         monkeypatch: pytest.MonkeyPatch) -> Artifact:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))
    return prepare_artifact(backend, source, cpu_params)[0]


def test_int4_artifact_is_smaller_and_records_what_was_written(int4: Artifact, fp32_onnx: Path) -> None:
    fp32 = weight_summary(fp32_onnx)
    assert int4.size_bytes < sum(f.stat().st_size for f in fp32_onnx.iterdir()) / 2
    assert int4.details["weight_bytes"] < fp32["weight_bytes"] / 2
    assert int4.details["quantized_ops"]["MatMulNBits"] == 11  # 2 layers × (qkv, o, gate, up, down) + LM head
    assert {"op": "MatMulNBits", "bits": 4, "block_size": 32, "accuracy_level": 4} in int4.details["quantization"]
    assert int4.precision == "int4-b32-a4" and int4.format == "onnx"
    assert fp32["quantized_ops"] == {} and fp32["float_matmuls"] == 11


def test_prediction_matches_the_builders_weights(backend: OnnxRuntimeBackend, source: ModelSource, int4: Artifact,
                                                 fp32_onnx: Path, cpu_params: Params) -> None:
    workload = Workload(prompt_tokens=16, gen_tokens=8, context=128)
    shape = source.metadata["config"]
    for params, written in ((cpu_params, int4.details), ({**cpu_params, "precision": "fp32"}, weight_summary(fp32_onnx))):
        stored = weight_bytes(shape, source.parameters, params["precision"], params["block_size"])
        assert stored == written["weight_bytes"] and rope_bytes(shape) == written["rope_cache_bytes"]
        prediction = backend.predict(source, params, workload, example_hardware())
        assert prediction.memory_bytes == sum(prediction.breakdown.values())
        # 2 layers × 129 positions × 2 KV heads × 32 dims × (K, V) × fp32
        assert prediction.breakdown["kv_cache"] == 2 * 129 * 2 * 32 * 2 * 4
        # The tiny model fits in the example machine's caches, so memory bandwidth bounds nothing;
        # without caches, its weights at twice the copy bandwidth (20 GB/s) do.
        assert prediction.latency_lower_bound_ms is None
        cpu = example_hardware().cpu.model_copy(update={"caches": []})
        bound = backend.predict(source, params, workload, example_hardware().model_copy(update={"cpu": cpu}))
        assert bound.latency_lower_bound_ms and 0 < bound.latency_lower_bound_ms <= stored / (2 * 20e9) * 1000


def test_float_precisions_ignore_block_settings(backend: OnnxRuntimeBackend, source: ModelSource, cpu_params: Params,
                                                fp32_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[tuple[str, int | None, int | None]] = []

    def fake_build(hf_dir: Path, out_dir: Path, precision: str, *, block_size: int | None,
                   accuracy_level: int | None, target: str) -> Path:
        builds.append((precision, block_size, accuracy_level))
        return Path(shutil.copytree(fp32_onnx, out_dir))

    monkeypatch.setattr(backend_module, "hf_to_onnx", fake_build)
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    artifacts = [prepare_artifact(backend, source, {**cpu_params, "precision": "fp32", "block_size": b,
                                                    "accuracy_level": a})[0] for b, a in ((32, 4), (64, 0), (128, 4))]
    assert builds == [("fp32", None, None)]
    assert len({a.path for a in artifacts}) == 1 and artifacts[0].precision == "fp32"
    assert artifact_settings({**cpu_params, "precision": "int8"}) == {"precision": "int8", "block_size": 32,
                                                                      "accuracy_level": 4}
    assert backend.describe({**cpu_params, "precision": "fp32"}) == (
        "precision=fp32 intra_op_num_threads=1 allow_spinning=False graph_optimization_level=ORT_ENABLE_ALL "
        "execution_provider=cpu")


def test_logprobs_match_the_pytorch_reference(backend: OnnxRuntimeBackend, source: ModelSource, fp32_onnx: Path,
                                              cpu_params: Params) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokens = backend.tokenize(source, TEXT)
    artifact = Artifact(path=fp32_onnx, format="onnx", precision="fp32", bits_per_weight=32, size_bytes=1)
    (chunk, *_) = backend.logprobs(artifact, {**cpu_params, "precision": "fp32"}, tokens, chunk_tokens=24)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    with torch.no_grad():
        reference = torch.log_softmax(model(torch.tensor([tokens[:24]])).logits[0, :-1], dim=-1).numpy()
    assert chunk.shape == reference.shape == (23, 384) and chunk.dtype == np.float32
    assert np.abs(chunk - reference).max() < 1e-4


def test_tokenize_adds_bos_like_the_model_expects(backend: OnnxRuntimeBackend, source: ModelSource) -> None:
    tokens = backend.tokenize(source, "The quick brown fox")
    assert tokens[0] == 1 and 1 not in tokens[1:]  # <s> once, from tokenizer.json's post-processor


def test_search_space_offers_fp16_only_with_a_gpu_provider(backend: OnnxRuntimeBackend, source: ModelSource) -> None:
    workload = Workload()
    cpu_only = backend.search_space(source, example_hardware(), workload)
    assert cpu_only["precision"].choices == ("fp32", "int8", "int4")
    assert cpu_only["execution_provider"].choices == ("cpu",)
    assert (cpu_only["intra_op_num_threads"].low, cpu_only["intra_op_num_threads"].high) == (1, 2)
    with_dml = example_hardware().model_copy(update={"accelerators": [
        Accelerator(kind="onnxruntime-ep", name="DmlExecutionProvider", details={"provider": "dml"})]})
    space = backend.search_space(source, with_dml, workload)
    assert space["precision"].choices == ("fp32", "fp16", "int8", "int4")
    assert space["execution_provider"].choices == ("cpu", "dml")
    assert backend.starting_points(source, with_dml, workload)[-1]["execution_provider"] == "dml"


def test_fp16_is_refused_on_a_cpu_only_machine(backend: OnnxRuntimeBackend, source: ModelSource, cpu_params: Params,
                                               tmp_path: Path) -> None:
    with pytest.raises(AutotuneError, match="GPU execution provider"):
        backend.prepare(source, {**cpu_params, "precision": "fp16"}, tmp_path)


def test_unavailable_without_onnxruntime_genai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    availability = OnnxRuntimeBackend().availability()
    assert not availability.available
    assert "pip install onnxruntime-genai" in availability.reason


def test_inspect_refuses_other_formats(backend: OnnxRuntimeBackend, fp32_onnx: Path) -> None:
    with pytest.raises(AutotuneError, match="Hugging Face folder, not onnx"):
        backend.inspect(fp32_onnx)
