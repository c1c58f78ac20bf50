"""Test helpers for autotune and its plugins: a fake backend and the backend conformance suite."""

from .conformance import BackendConformance
from .fake_backend import FakeBackend
from .inline_plugin import InlineBackends, manager_with
from .runs_here import skip_unless_runs_here

__all__ = ["BackendConformance", "FakeBackend", "InlineBackends", "manager_with", "skip_unless_runs_here"]
