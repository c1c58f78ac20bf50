"""Shared fixtures: one tiny HF model and one artifact cache per test session, so each ONNX build happens once;
a profile of its int4 build for the export and load tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune import DeploymentProfile
from autotune.testing.tiny_hf import make_tiny_hf


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autotune-cache")


@pytest.fixture(scope="session")
def fp32_onnx(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model through the plugin's HF → ONNX conversion (fp32)."""
    from autotune_onnxruntime import plugin

    (conversion,) = plugin.autotune_conversions()
    return conversion.convert(tiny_hf, tmp_path_factory.mktemp("onnx") / "tiny-fp32")


@pytest.fixture
def int4_profile(tiny_hf: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> DeploymentProfile:
    """A profile of the tiny model's int4 build (threads 2, no spinning, context 64), measured on this machine.

    Its figures are the sample profile's; what matters is that the artifact, runtime version and
    machine fingerprint are real, so exports run and ``autotune.load`` checks pass.
    """
    from autotune.probe.machine import probe_here
    from autotune.testing import prepare_artifact
    from autotune.testing.profiles import sample_profile
    from autotune_onnxruntime import OnnxRuntimeBackend

    monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))
    backend = OnnxRuntimeBackend()
    params = {"precision": "int4", "block_size": 32, "accuracy_level": 4, "intra_op_num_threads": 2,
              "allow_spinning": False, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_provider": "cpu"}
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_hf), params)
    sample = sample_profile("onnxruntime")
    return sample.model_copy(update={
        "model": sample.model.model_copy(update={"path": str(tiny_hf), "format": "hf"}),
        "artifact": sample.artifact.model_copy(update={"path": str(artifact.path), "details": artifact.details}),
        "backend": sample.backend.model_copy(update={"version": backend.version()}),
        "hardware": {**sample.hardware, "fingerprint": probe_here(measure_bandwidth=False).fingerprint},
        "workload": sample.workload.model_copy(update={"prompt_tokens": 16, "gen_tokens": 8, "context": 64}),
        "params": params,
    })
