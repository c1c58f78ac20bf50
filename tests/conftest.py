"""Shared fixtures: every test runs on its own cache and this machine's hardware, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``AUTOTUNE_CACHE`` (studies, artifacts, self-tests) and no hardware description from outside."""
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOTUNE_HARDWARE_JSON", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A file the fake and replay backends accept as a model (the GGUF magic, nothing else)."""
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    return path
