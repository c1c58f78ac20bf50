"""The throwaway PostgreSQL servers behind the ``postgres`` and ``postgres_url`` fixtures.

Real servers: one for the session (``postgres``), and one of the test's own where stopping is under test.
Where no server can run here (binaries, unprivileged user or driver missing) these tests skip, saying why.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import optuna
import pytest

from autotune.testing.postgres import (
    SERVER_USER,
    PostgresServer,
    PostgresUnavailable,
    find_bin_dir,
    running_postgres,
)

psycopg = pytest.importorskip("psycopg")


def libpq(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no ``+psycopg`` driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq(url)) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def test_the_server_answers_on_its_url_on_loopback_only(postgres: PostgresServer) -> None:
    assert postgres.url.startswith(f"postgresql+psycopg://{postgres.user}:{postgres.password}@127.0.0.1:")
    with psycopg.connect(libpq(postgres.url)) as connection:
        user, database = connection.execute("SELECT current_user, current_database()").fetchone()
        listen = connection.execute("SHOW listen_addresses").fetchone()[0]
        sockets = connection.execute("SHOW unix_socket_directories").fetchone()[0]
    assert (user, database) == (postgres.user, postgres.database)
    assert listen == "127.0.0.1"
    assert Path(sockets) == postgres.root  # its own temporary folder, not /var/run/postgresql
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        assert (postgres.root / "data").stat().st_uid == pwd.getpwnam(SERVER_USER).pw_uid


def test_the_password_stays_out_of_the_servers_repr(postgres: PostgresServer) -> None:
    assert postgres.password not in repr(postgres)


def test_fresh_databases_are_empty_and_independent(postgres: PostgresServer) -> None:
    first, second = postgres.create_database(), postgres.create_database()
    assert first != second
    with psycopg.connect(libpq(first)) as connection:
        connection.execute("CREATE TABLE only_here (x integer)")
    assert tables(first) == {"only_here"}
    assert tables(second) == set()
    postgres.drop_database(first.rsplit("/", 1)[1])
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(libpq(first)).close()


def test_each_test_gets_an_empty_database(postgres_url: str) -> None:
    assert tables(postgres_url) == set()


def test_optuna_stores_a_study_in_the_database(postgres_url: str) -> None:
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        study = optuna.create_study(study_name="shared", storage=storage)
        study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
        reloaded = optuna.load_study(study_name="shared", storage=postgres_url)
        assert len(reloaded.trials) == 3
    finally:
        storage.engine.dispose()
    assert "trials" in tables(postgres_url)


def test_a_server_checks_passwords_and_stops_closing_its_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest's temporary folders are root-only when the tests run as root: the server must not need them.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        with running_postgres(database="own", auth="scram-sha-256") as server:
            with psycopg.connect(libpq(server.url)) as connection:
                assert connection.execute("SELECT 1").fetchone() == (1,)
            wrong = libpq(server.url).replace(f":{server.password}@", ":wrong@")
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(wrong).close()
            port, root = server.port, server.root
    except PostgresUnavailable as error:
        pytest.skip(f"no PostgreSQL server here: {error}")
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
    assert not root.exists()


def test_missing_binaries_are_unavailable_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_PG_BIN", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="AUTOTUNE_PG_BIN"):
        find_bin_dir()


def test_as_root_without_the_unprivileged_user_it_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("only root needs the unprivileged user")
    monkeypatch.setattr("autotune.testing.postgres.SERVER_USER", "autotune-pg-missing")
    with pytest.raises(PostgresUnavailable, match="scripts/postgres-user.sh"), running_postgres():
        pass
