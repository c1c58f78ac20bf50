"""Test helpers for autotune and its plugins: a fake backend and the backend conformance suite."""

from .conformance import BackendConformance
from .fake_backend import FakeBackend

__all__ = ["BackendConformance", "FakeBackend"]
