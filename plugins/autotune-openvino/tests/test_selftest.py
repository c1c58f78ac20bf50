"""The OpenVINO self-test run directly; the conformance suite runs it in a worker, cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune_openvino import OpenVINOBackend

pytest.importorskip("openvino")


def test_self_test_runs_float_and_u8_matmuls(tmp_path: Path) -> None:
    summary = OpenVINOBackend().self_test(tmp_path)
    assert summary is not None
    assert "8-bit and 4-bit-weight matmuls on CPU" in summary
    assert "inference precision" in summary and "threads" in summary
