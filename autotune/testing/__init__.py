"""Test helpers for autotune and its plugins: a fake backend, tiny models and the backend conformance suite.

The pytest-based parts (``BackendConformance``, ``skip_unless_runs_here``) load on first use, so the
rest (the tiny model writers a backend's self-test uses) works where pytest is not installed.
"""

from __future__ import annotations

from typing import Any

from autotune.testing.fake_backend import FakeBackend
from autotune.testing.inline_plugin import InlineBackends, manager_with

_NEEDS_PYTEST = {"BackendConformance": "conformance", "skip_unless_runs_here": "runs_here"}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_PYTEST:
        from importlib import import_module

        return getattr(import_module(f".{_NEEDS_PYTEST[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BackendConformance", "FakeBackend", "InlineBackends", "manager_with", "skip_unless_runs_here"]
