"""Database URLs: defaults, redaction, engines, the schema lock, and storage errors as one line.

Both the Optuna study and the measurement store live in the database ``--storage`` names: a SQLite
file in the cache by default, or a PostgreSQL server a fleet of devices shares
(``postgresql+psycopg://user:password@host:5432/dbname``, driver: ``pip install 'slm-autotune[postgres]'``).
A password in the URL is never shown: every message and profile carries ``redact_url(url)``.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from autotune.errors import StorageError
from autotune.store.cache import cache_dir

if TYPE_CHECKING:
    import sqlalchemy

STORAGE_FORMS = "sqlite:///path/to/studies.db or postgresql+psycopg://user@host:5432/dbname"
SCHEMA_LOCK = zlib.crc32(b"autotune schema")
"""PostgreSQL advisory lock key held while tables are created: N workers starting on an empty database
would otherwise race on ``CREATE TABLE`` and Optuna's ``alembic_version`` row (IntegrityError)."""


def default_storage() -> str:
    """SQLite file in the cache: rerunning a command from anywhere resumes its study."""
    return f"sqlite:///{cache_dir() / 'studies.sqlite3'}"


def redact_url(url: str) -> str:
    """A storage URL with its password masked, for profiles, logs and messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unreadable URL is shown without anything after the scheme's user part
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL (one file, one machine)."""
    return url.startswith("sqlite:")


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn what opening or using the database at ``url`` raises into one ``StorageError`` line that says what to do."""
    import sqlalchemy.exc

    shown = redact_url(url)
    _check_url(url, shown)
    try:
        yield
    except ImportError as error:
        missing = (f"the database driver {error.name!r} is not installed" if error.name else
                   f"its database driver is not installed ({' '.join(str(error).split())[:120]})")
        raise StorageError(f"--storage {shown}: {missing}; for PostgreSQL install it with "
                           "`pip install 'slm-autotune[postgres]'` (psycopg)") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"--storage {shown}: unknown database kind; use {STORAGE_FORMS}") from None
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"cannot read --storage {shown!r} as a database URL; use {STORAGE_FORMS}") from None
    except sqlalchemy.exc.ProgrammingError as error:
        detail = " ".join(str(error.orig).split())[:200]
        raise StorageError(f"--storage {shown} refused: {detail}; the database user needs the right to create and "
                           "write tables in it") from None
    except sqlalchemy.exc.OperationalError as error:
        detail = " ".join(str(error.orig).split())[:200]
        raise StorageError(f"cannot open --storage {shown}: {detail}; check that the server runs, the address and "
                           "the credentials, and that the file's folder is writable") from None
    except sqlalchemy.exc.DatabaseError as error:
        detail = " ".join(str(error.orig).split())[:200]
        raise StorageError(f"--storage {shown} cannot be used as a database ({detail}); point --storage at another "
                           "file or server") from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(f"--storage {shown} failed: {type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
    except OSError as error:
        raise StorageError(f"cannot create the storage file for --storage {shown}: {error.strerror}") from None
    except RuntimeError as error:  # optuna: the schema was written by a newer version
        raise StorageError(f"--storage {shown} holds studies in a newer schema than this autotune's optuna reads "
                           f"({' '.join(str(error).split())[:200]}); upgrade autotune or use another storage") from None


def _check_url(url: str, shown: str) -> None:
    """Refuse a URL SQLAlchemy would only reject with a bare ValueError later (a port that is not a number)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        port = make_url(url).port
    except ArgumentError:
        raise StorageError(f"cannot read --storage {shown!r} as a database URL; use {STORAGE_FORMS}") from None
    except ValueError:  # int() of the port, or an unclosed IPv6 bracket
        raise StorageError(f"cannot read --storage {shown!r} as a database URL: its host:port part is not "
                           f"host:NUMBER; use {STORAGE_FORMS}") from None
    if port is not None and not 0 < port < 65536:
        raise StorageError(f"--storage {shown}: port {port} is not a TCP port (1 to 65535); use {STORAGE_FORMS}")


def create_engine(url: str) -> sqlalchemy.Engine:
    """An engine for ``url``; SQLite waits up to a minute for another process's write instead of failing."""
    import sqlalchemy

    if is_sqlite(url):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return sqlalchemy.create_engine(url, connect_args={"timeout": 60})
    return sqlalchemy.create_engine(url, pool_pre_ping=True)


@contextmanager
def schema_lock(engine: sqlalchemy.Engine) -> Iterator[None]:
    """Hold the database-wide schema lock while tables are created.

    PostgreSQL: an advisory lock. SQLite: an exclusive ``flock`` on a file beside the database (two processes
    creating tables in one new file at once otherwise fail with "table … already exists").
    """
    import sqlalchemy

    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})
