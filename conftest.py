"""Fixtures for every test of the repository (the core's and each plugin's)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_waiting_for_a_quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never wait for other processes to finish: a busy test machine must not make a test slow.

    Disturbed figures are still measured and marked; ``tests/test_busy.py`` sets its own allowance.
    """
    monkeypatch.setenv("AUTOTUNE_QUIET_WAIT_S", "0")
