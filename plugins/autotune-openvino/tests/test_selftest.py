"""The OpenVINO self-test: directly, and through the core's worker and cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.selftest import run_self_test
from autotune.testing.conformance import example_hardware

from autotune_openvino import OpenVINOBackend

pytest.importorskip("openvino")


def test_self_test_runs_float_and_u8_matmuls(tmp_path: Path) -> None:
    summary = OpenVINOBackend().self_test(tmp_path)
    assert summary is not None
    assert "8-bit and 4-bit-weight matmuls on CPU" in summary
    assert "inference precision" in summary and "threads" in summary


def test_self_test_passes_in_a_worker_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path))
    backend, hardware = OpenVINOBackend(), example_hardware()
    result = run_self_test(backend, hardware)
    assert result.passed is True, result.summary
    assert "matmuls on CPU" in result.summary and not result.cached
    again = run_self_test(backend, hardware)
    assert again.cached is True and again.passed is True and again.summary == result.summary
