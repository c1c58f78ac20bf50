"""Shared fixtures: one tiny HF model and one artifact cache per test session, so each ONNX build happens once."""

from __future__ import annotations

from pathlib import Path

import pytest

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
