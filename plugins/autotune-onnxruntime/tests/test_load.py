"""``autotune.load(profile)`` on a real onnxruntime profile: the tuned onnxruntime-genai model, decoding."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import autotune
from autotune import DeploymentProfile
from autotune.deploy import ProfileMismatch
from autotune.errors import AutotuneError
from autotune.testing.exports import load_example_generates
from autotune_onnxruntime import GenaiDeployment

pytest.importorskip("onnxruntime_genai")


def test_load_returns_the_tuned_model_that_decodes(int4_profile: DeploymentProfile, tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(int4_profile.to_json())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileMismatch)  # same runtime, same machine: nothing to warn about
        deployment = autotune.load(path)
    assert isinstance(deployment, GenaiDeployment)
    assert deployment.max_length == 65  # the measured context plus the last picked token
    text = deployment.generate("The quick brown fox", max_new_tokens=8)
    assert text
    # The generator parameters are the ones it decodes with: greedy, the same reply twice.
    assert deployment.generate("The quick brown fox", max_new_tokens=8) == text


def test_load_refuses_a_folder_that_is_not_a_model(int4_profile: DeploymentProfile, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    profile = int4_profile.model_copy(update={"artifact": int4_profile.artifact.model_copy(update={"path": str(empty)})})
    path = tmp_path / "profile.json"
    path.write_text(profile.to_json())
    with pytest.raises(AutotuneError, match="no genai_config.json"):
        autotune.load(path)


def test_the_load_any_profile_example_generates(int4_profile: DeploymentProfile, tmp_path: Path) -> None:
    first, text = load_example_generates(int4_profile, tmp_path)
    assert first == "onnxruntime: autotune_onnxruntime.deployment.GenaiDeployment" and text
