"""``autotune.load(profile)`` on a real mlx profile: mlx-lm's model and tokenizer with the measured settings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import autotune
from autotune import DeploymentProfile
from autotune.deploy import ProfileMismatch
from autotune.testing.exports import load_example_generates
from autotune_mlx import MlxDeployment, RuntimeSettings

mlx_lm = pytest.importorskip("mlx_lm", reason="mlx-lm is not installed: pip install 'slm-autotune-mlx[cpu]' (Linux) or [metal]")


def test_load_returns_the_tuned_model_that_decodes(q4_profile: DeploymentProfile, tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(q4_profile.to_json())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileMismatch)  # same runtime, same machine: nothing to warn about
        deployment = autotune.load(path)
    assert isinstance(deployment, MlxDeployment)
    assert deployment.settings == RuntimeSettings(kv_bits=8, kv_group_size=32, prefill_step_size=512)
    steps = list(mlx_lm.stream_generate(deployment.model, deployment.tokenizer, "The quick brown fox", max_tokens=8,
                                        **deployment.settings.generate_kwargs()))
    assert 1 <= steps[-1].generation_tokens <= 8
    assert deployment.generate("The quick brown fox", 8)


def test_the_load_any_profile_example_generates(q4_profile: DeploymentProfile, tmp_path: Path) -> None:
    first, text = load_example_generates(q4_profile, tmp_path)
    assert first == "mlx: autotune_mlx.deployment.MlxDeployment" and text
