"""Test helpers for autotune and its plugins: a fake backend, tiny models and the backend conformance suite.

A plugin's tests build and measure through ``prepare_artifact`` (the tuner's artifact cache: built once,
the flag says whether now) and ``measure`` (a fresh worker process with a timeout and a memory guard),
exactly as the tuner does, without importing autotune's internals.

The pytest-based parts (``BackendConformance``, ``skip_unless_runs_here``) and the measuring helpers load on
first use, so the rest (the tiny model writers a backend's self-test uses) works where pytest is not installed.
"""

from __future__ import annotations

from typing import Any

from autotune.testing.fake_backend import FakeBackend
from autotune.testing.inline_plugin import InlineBackends, manager_with

_ON_FIRST_USE = {"BackendConformance": ".conformance", "skip_unless_runs_here": ".runs_here",
                 "prepare_artifact": "autotune.measure.artifacts", "measure": "autotune.measure.trial"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        from importlib import import_module

        return getattr(import_module(_ON_FIRST_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BackendConformance", "FakeBackend", "InlineBackends", "manager_with", "measure", "prepare_artifact",
           "skip_unless_runs_here"]
