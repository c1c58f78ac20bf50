"""The onnxruntime self-test run directly; the conformance suite runs it in a worker, cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune_onnxruntime import OnnxRuntimeBackend

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_self_test_runs_the_4bit_graph(tmp_path: Path) -> None:
    summary = OnnxRuntimeBackend().self_test(tmp_path)
    assert summary is not None
    assert "4-bit MatMulNBits" in summary and "threads" in summary
