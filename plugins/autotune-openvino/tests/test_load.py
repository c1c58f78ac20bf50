"""``autotune.load(profile)`` on a real openvino profile: openvino-genai's LLMPipeline on the tuned IR, decoding."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

import autotune
from autotune import DeploymentProfile
from autotune.deploy import ProfileMismatch
from autotune.errors import BackendUnavailable
from autotune.testing.exports import load_example_generates

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_load_returns_the_tuned_pipeline_that_decodes(int8_profile: DeploymentProfile, tmp_path: Path) -> None:
    genai = pytest.importorskip("openvino_genai", reason="openvino-genai is not installed: pip install "
                                "'slm-autotune-openvino[genai]'")
    path = tmp_path / "profile.json"
    path.write_text(int8_profile.to_json())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileMismatch)  # same runtime, same machine: nothing to warn about
        pipeline = autotune.load(path)
    assert isinstance(pipeline, genai.LLMPipeline)
    config = pipeline.get_generation_config()
    config.max_new_tokens = config.min_new_tokens = 8  # EOS cannot end it early: exactly 8 tokens
    config.do_sample = False
    result = pipeline.generate(["The quick brown fox"], config)
    assert result.perf_metrics.get_num_generated_tokens() == 8 and result.texts[0]


def test_load_says_what_to_install_without_openvino_genai(int8_profile: DeploymentProfile,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from autotune_openvino import OpenVINOBackend

    monkeypatch.setitem(sys.modules, "openvino_genai", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'slm-autotune-openvino\[genai\]'"):
        OpenVINOBackend().load_profile(int8_profile)


def test_the_load_any_profile_example_generates(int8_profile: DeploymentProfile, tmp_path: Path) -> None:
    pytest.importorskip("openvino_genai", reason="openvino-genai is not installed: pip install 'slm-autotune-openvino[genai]'")
    first, text = load_example_generates(int8_profile, tmp_path)
    assert first == "openvino: openvino_genai.py_openvino_genai.LLMPipeline" and text
