"""Skipping real-runtime tests, with the reason, where the runtime does not run on the test machine."""

from __future__ import annotations

import pytest

from autotune.measure.selftest import usable
from autotune.plugins.backend import Backend
from autotune.probe.machine import probe_here

_verdicts: dict[str, str | None] = {}
"""Per backend name, why it cannot run here (None: it runs). Tests give each test its own cache folder,
so the self-test's own cache would not survive between tests; one verdict per test session is enough."""


def skip_unless_runs_here(backend: Backend) -> None:
    """Skip the calling test when ``backend``'s runtime is missing or fails its self-test on this machine."""
    if backend.name not in _verdicts:
        availability, _ = usable(backend, probe_here(measure_bandwidth=False))
        _verdicts[backend.name] = None if availability.available else availability.reason
    reason = _verdicts[backend.name]
    if reason is not None:
        pytest.skip(f"{backend.name} does not run on this machine: {reason}")
