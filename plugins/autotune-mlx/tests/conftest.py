"""Shared fixtures: one tiny HF model and one artifact cache per test session, so each MLX conversion happens once;
a profile of its 4-bit build for the export and load tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune import DeploymentProfile
from autotune.testing.tiny_hf import make_tiny_hf

Q4_PARAMS = {"bits": 4, "group_size": 64, "mixed": False, "dtype": "float32", "kv_bits": 8, "prefill_step_size": 512}
"""A tuned configuration: 4-bit weights, an 8-bit KV cache, a prefill step other than mlx-lm's default."""


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autotune-cache")


@pytest.fixture
def q4_profile(tiny_hf: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> DeploymentProfile:
    """A profile of the tiny model's 4-bit MLX build with ``Q4_PARAMS``, measured (as it says) with this runtime
    on this machine; skipped, saying why, where MLX does not run."""
    from autotune.probe.machine import probe_here
    from autotune.testing import prepare_artifact
    from autotune.testing.profiles import sample_profile
    from autotune_mlx import MlxBackend

    backend = MlxBackend()
    availability = backend.availability()
    if not availability.available:
        pytest.skip(f"mlx does not run here: {availability.reason}")
    monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_hf), Q4_PARAMS)
    sample = sample_profile("mlx")
    return sample.model_copy(update={
        "model": sample.model.model_copy(update={"path": str(tiny_hf), "format": "hf"}),
        "artifact": sample.artifact.model_copy(update={"path": str(artifact.path), "precision": artifact.precision,
                                                      "details": artifact.details}),
        "backend": sample.backend.model_copy(update={"version": backend.version()}),
        "hardware": {**sample.hardware, "fingerprint": probe_here(measure_bandwidth=False).fingerprint},
        "workload": sample.workload.model_copy(update={"prompt_tokens": 16, "gen_tokens": 8, "context": 64}),
        "params": Q4_PARAMS,
    })
