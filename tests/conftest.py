"""Shared fixtures: every test runs on its own cache and this machine's hardware, never the user's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from autotune.testing.postgres import PostgresServer


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (skips, saying why, where none can run here)."""
    from autotune.testing.postgres import PostgresUnavailable, running_postgres

    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as error:
            pytest.skip(f"no PostgreSQL server here: {error}")
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh empty database on the session's server, dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url.rsplit("/", 1)[1])
