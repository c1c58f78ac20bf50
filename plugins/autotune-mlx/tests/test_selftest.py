"""The MLX self-test run directly; the conformance suite runs it in a worker, cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune_mlx import MlxBackend

pytest.importorskip("mlx.core")


def test_self_test_runs_float_and_4bit_matmuls(tmp_path: Path) -> None:
    summary = MlxBackend().self_test(tmp_path)
    assert summary is not None
    assert "4-bit (group 64) quantized matmul on the " in summary and "default device" in summary
