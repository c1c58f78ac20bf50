"""Throwaway PostgreSQL servers for tests of shared study storages.

``running_postgres()`` runs ``initdb`` into a fresh temporary folder and starts a server on a free port of
127.0.0.1 only, with its unix socket in that folder; on exit it stops the server (``pg_ctl stop -m fast``, then
SIGKILL) and deletes the folder. The server has one user with a random password (loopback trusts it by default;
the URL carries the password anyway, so tests can check that it is never written out) and one database, and
``create_database()`` adds fresh empty ones, so a test session shares one server and each test has its own
database.

postgres refuses to run as root. As root the server runs as the unprivileged user ``autotune-pg``, which
``scripts/postgres-user.sh`` creates. Binaries are found through ``AUTOTUNE_PG_BIN`` (a folder), else ``PATH``,
else ``/usr/lib/postgresql/*/bin`` (newest first). Where the binaries, the user or the ``psycopg`` driver are
missing, ``PostgresUnavailable`` says so; a test fixture turns it into a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from autotune.errors import AutotuneError

SERVER_USER = "autotune-pg"
"""The unprivileged system user servers run as when the tests run as root."""

_BINARIES = ("initdb", "pg_ctl", "postgres")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Speed over durability: the server lives for one test session and its data is thrown away.
_SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
"""


class PostgresUnavailable(AutotuneError):
    """No PostgreSQL server can be started here (binaries, unprivileged user or driver missing); tests skip."""


class PostgresFailed(AutotuneError):
    """``initdb``, the server or an administrative command failed; the message ends with the server's log."""


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server's commands: ``uid``/``gid`` None means the current user."""

    uid: int | None = None
    gid: int | None = None


@dataclass
class PostgresServer:
    """A running throwaway server; ``url`` is its first database's SQLAlchemy URL (with the password)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    bin_dir: Path
    root: Path
    """The temporary folder holding the data folder (``data``), the unix socket and ``server.log``."""
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @property
    def url(self) -> str:
        """``postgresql+psycopg://user:password@127.0.0.1:PORT/database``."""
        return self.url_for(self.database)

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql+psycopg://{credentials}@{self.host}:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (``name``, else the next ``test_N``) and return its URL."""
        if name is None:
            name = f"test_{next(self._counter)}"
        self._admin(f"CREATE DATABASE {_identifier(name)}")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection still open to it (``WITH (FORCE)``)."""
        self._admin(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def _admin(self, statement: str) -> None:
        import psycopg

        # A fresh connection per statement: CREATE DATABASE cannot run inside a transaction, and tests are few.
        try:
            with psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                 dbname="postgres", autocommit=True, connect_timeout=10) as connection:
                connection.execute(statement.encode())
        except psycopg.Error as error:
            raise PostgresFailed(f"{statement!r} failed on the test server: {error}") from error


@contextlib.contextmanager
def running_postgres(*, user: str = "autotune", database: str = "autotune",
                     auth: Literal["trust", "scram-sha-256"] = "trust",
                     start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a throwaway server, yield it, then stop it and delete its files.

    ``auth`` is the method for TCP connections from 127.0.0.1 (the unix socket always trusts): ``trust`` accepts
    any password, ``scram-sha-256`` checks it. Raises ``PostgresUnavailable`` when no server can run here and
    ``PostgresFailed`` when one was tried and failed.
    """
    for name in (user, database):
        _identifier(name)
    bin_dir = find_bin_dir()
    try:
        import psycopg  # noqa: F401  (create_database and the URLs need it; say so before starting anything)
    except ImportError as error:
        raise PostgresUnavailable("the psycopg driver is not installed: pip install 'slm-autotune[postgres]'") from error
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="autotune-pg-", dir=_temp_parent(run_as)))
    try:
        if run_as.uid is not None:
            os.chown(root, run_as.uid, run_as.gid if run_as.gid is not None else -1)
        password = secrets.token_urlsafe(18)
        _initdb(bin_dir, root, run_as, user, password, auth)
        port = _start(bin_dir, root, run_as, start_timeout)
        try:
            server = PostgresServer(host="127.0.0.1", port=port, user=user, password=password, database=database,
                                    bin_dir=bin_dir, root=root)
            server.create_database(database)
            yield server
        finally:
            _stop(bin_dir, root, run_as)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: ``AUTOTUNE_PG_BIN``, else PATH, else Debian's."""
    override = os.environ.get("AUTOTUNE_PG_BIN")
    if override:
        candidates = [Path(override)]
    else:
        candidates = []
        found = shutil.which("initdb")
        if found:
            # Resolve symlinks too: pg_ctl and initdb look for postgres next to their real selves.
            candidates += [Path(found).parent, Path(found).resolve().parent]
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(versions, key=lambda p: _version_key(p.parent.name), reverse=True)
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in _BINARIES):
            return candidate
    where = f"AUTOTUNE_PG_BIN={override}" if override else "PATH or /usr/lib/postgresql/*/bin"
    raise PostgresUnavailable(f"no PostgreSQL server binaries ({', '.join(_BINARIES)}) in {where}; "
                              "install PostgreSQL or point AUTOTUNE_PG_BIN at its bin folder")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _identifier(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier (so it needs no quoting in URLs or SQL)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain lower-case identifier (letters, digits, _; 63 at most)")
    return name


def _run_as() -> _RunAs:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return _RunAs()
    import pwd  # POSIX only, like running as root

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(f"running as root and there is no unprivileged user {SERVER_USER!r} to run "
                                  "postgres as (it refuses root): run scripts/postgres-user.sh as root") from None
    if entry.pw_uid == 0:
        raise PostgresUnavailable(f"the user {SERVER_USER!r} is root (uid 0); postgres needs an unprivileged one")
    return _RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _temp_parent(run_as: _RunAs) -> str:
    """A temporary folder every one of whose ancestors the server user may traverse (pytest's may be root-only)."""
    candidates = [tempfile.gettempdir()]
    if run_as.uid is None:
        return candidates[0]
    candidates += ["/tmp", "/var/tmp"]
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_dir() and all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents)):
            return str(path)
    raise PostgresUnavailable(f"no temporary folder the user {SERVER_USER!r} can reach (tried {candidates})")


def _run(command: Sequence[str | Path], run_as: _RunAs, root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # PG* variables (PGDATA, PGPORT, PGHOST ...) from the caller's shell must not steer the throwaway server.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    environment |= {"LC_ALL": "C", "HOME": str(root)}
    return subprocess.run([str(part) for part in command], cwd=root, env=environment, capture_output=True,
                          text=True, timeout=timeout, check=False, user=run_as.uid, group=run_as.gid,
                          extra_groups=None if run_as.uid is None else [])


def _initdb(bin_dir: Path, root: Path, run_as: _RunAs, user: str, password: str, auth: str) -> None:
    password_file = root / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    if run_as.uid is not None:
        os.chown(password_file, run_as.uid, run_as.gid if run_as.gid is not None else -1)
    try:
        result = _run([bin_dir / "initdb", "--pgdata", root / "data", "--username", user, "--pwfile", password_file,
                       "--auth-local", "trust", "--auth-host", auth, "--encoding", "UTF8", "--locale", "C",
                       "--no-sync", "--no-instructions"], run_as, root, timeout=120)
    finally:
        password_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PostgresFailed(f"initdb failed (exit {result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    with (root / "data" / "postgresql.conf").open("a") as conf:
        conf.write(_SETTINGS.format(socket_dir=root))


def _start(bin_dir: Path, root: Path, run_as: _RunAs, timeout: float) -> int:
    """Start the server on a free port and return it; a port taken between choosing and binding is retried."""
    log = root / "server.log"
    for _attempt in range(5):
        port = _free_port()
        result = _run([bin_dir / "pg_ctl", "start", "--pgdata", root / "data", "--log", log, "--wait",
                       "--timeout", str(int(timeout)), "-o", f"-p {port}"], run_as, root, timeout=timeout + 30)
        if result.returncode == 0:
            return port
        text = _tail(log)
        if "could not bind" not in text and "already in use" not in text:
            break
    raise PostgresFailed(f"the PostgreSQL server did not start (exit {result.returncode}): "
                         f"{result.stderr.strip()}; server log: {text}")


def _stop(bin_dir: Path, root: Path, run_as: _RunAs) -> None:
    """``pg_ctl stop -m fast``; where that fails or hangs, SIGKILL the postmaster."""
    pid = _postmaster_pid(root / "data")
    try:
        stopped = _run([bin_dir / "pg_ctl", "stop", "--pgdata", root / "data", "--mode", "fast", "--wait",
                        "--timeout", "20"], run_as, root, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        stopped = False
    if stopped or pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        # Backends exit by themselves once the postmaster is gone.
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")  # a zombie nobody reaps (the postmaster was daemonized) is gone for our purposes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(log: Path, size: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-size:].strip()
    except OSError:
        return "(no log)"
