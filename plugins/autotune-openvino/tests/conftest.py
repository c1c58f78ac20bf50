"""Shared fixtures: one tiny HF model, its OpenVINO IR and one artifact cache per test session; a profile of its int8
build (the tuned runtime settings, this machine and runtime) for the export and load tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune import DeploymentProfile
from autotune.testing.tiny_hf import make_tiny_hf
from autotune_openvino import convert_hf_to_openvino

RUNTIME = {"device": "CPU", "threads": 2, "performance_hint": "LATENCY", "inference_precision": "f32",
           "kv_cache_precision": "u8"}


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_ir(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return convert_hf_to_openvino(tiny_hf, tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cached(artifact_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Artifacts built in one test are reused by the next (the cache is per session)."""
    monkeypatch.setenv("AUTOTUNE_CACHE", str(artifact_cache))
    return artifact_cache


@pytest.fixture
def int8_profile(tiny_ir: Path, cached: Path) -> DeploymentProfile:
    """A profile of the tiny IR's int8 build with ``RUNTIME``, measured (as it says) with this runtime on this machine."""
    from autotune.probe.machine import probe_here
    from autotune.testing import prepare_artifact
    from autotune.testing.profiles import sample_profile
    from autotune_openvino import OpenVINOBackend

    backend = OpenVINOBackend()
    params = {"weight_format": "int8", **RUNTIME}
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_ir), params)
    sample = sample_profile("openvino")
    return sample.model_copy(update={
        "model": sample.model.model_copy(update={"path": str(tiny_ir), "format": "openvino"}),
        "artifact": sample.artifact.model_copy(update={"path": str(artifact.path), "precision": "int8",
                                                      "details": artifact.details}),
        "backend": sample.backend.model_copy(update={"version": backend.version()}),
        "hardware": {**sample.hardware, "fingerprint": probe_here(measure_bandwidth=False).fingerprint},
        "workload": sample.workload.model_copy(update={"prompt_tokens": 16, "gen_tokens": 8, "context": 64}),
        "params": params,
    })
