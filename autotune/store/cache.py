"""Where autotune keeps what it builds: probe results, studies, and content-addressed artifacts.

``AUTOTUNE_CACHE`` overrides the location (default ``~/.cache/autotune``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autotune.errors import AutotuneError

CACHE_ENV = "AUTOTUNE_CACHE"


def cache_dir() -> Path:
    """The cache root, created on first use; one that cannot be created is one ``AutotuneError`` line."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autotune")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AutotuneError(_unwritable(root, error)) from None
    return root


def check_writable() -> Path:
    """The cache root, after checking a file can be written in it; else one ``AutotuneError`` naming it.

    A run keeps its artifacts, study and measurements there: a read-only cache made every trial fail with
    "prepare failed: OSError(30, 'Read-only file system')" and the run end in "No configuration met the budget".
    """
    root = cache_dir()
    try:
        handle, name = tempfile.mkstemp(prefix=".write-check-", dir=root)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise AutotuneError(_unwritable(root, error)) from None
    return root


def _unwritable(root: Path, error: OSError) -> str:
    return (f"the cache {root} cannot be written ({error.strerror or error}); autotune keeps artifacts, studies and "
            f"measurements there: make it writable, or point {CACHE_ENV} at a folder that is")


def key_digest(key: object, length: int = 24) -> str:
    """A stable short name for a JSON-able key (sorted, with ``str`` for what JSON cannot hold)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:length]


def artifact_dir(kind: str, key: dict[str, object]) -> Path:
    """Folder for an artifact identified by ``key`` (e.g. source hash + quantization type).

    The folder name is a hash of the key, so the same inputs always map to the same place and
    a finished artifact is built once.
    """
    return cache_dir() / "artifacts" / kind / key_digest(key)


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Build into a temporary sibling folder and move it into place only when the build succeeds.

    An interrupted or failed build leaves nothing at ``final``, so a half-written artifact is never
    mistaken for a finished one.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=final.name + ".partial-", dir=final.parent))
    try:
        yield scratch
        if final.exists():  # another process finished first; keep its result
            shutil.rmtree(scratch)
        else:
            scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def write_text_atomically(path: Path, text: str) -> bool:
    """Write ``text`` so that a concurrent reader never sees half a file; False when it could not.

    A cache that cannot be written is not an error: the value is computed again next time.
    """
    scratch: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(scratch, path)
        return True
    except OSError:
        if scratch is not None:
            Path(scratch).unlink(missing_ok=True)
        return False


def write_json_atomically(path: Path, data: object) -> bool:
    """``write_text_atomically`` of ``data`` as indented JSON."""
    return write_text_atomically(path, json.dumps(data, indent=1))
