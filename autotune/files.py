"""Reading the files autotune is pointed at: checked for their kind and bounded in size before they are read.

A path from the user or the environment can name anything: ``/dev/zero`` (endless: reading it whole filled
22 GiB), a FIFO (waits forever for a writer), a folder, or a 50 MB text of which 64 KiB are used. Every read
here refuses what is not a regular file before opening it (opening some devices has effects), opens without
blocking and checks the open file again (it may have been replaced in between), and never reads more than
its limit. Anything wrong is one ``UnreadableFile`` line naming the file and what it is.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError, one_line

MAX_JSON_BYTES = 16 * 2**20
"""Largest JSON file read (hardware descriptions, model configs, cache records are kilobytes)."""


class UnreadableFile(AutotuneError):
    """A file that is not a regular file, is too large, or cannot be read (the message says which)."""


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def shown_path(path: Path | str) -> str:
    """A path as one printable line: bytes that are not UTF-8 as escapes (``caf\\xe9.gguf``), control characters too."""
    try:
        text = os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    except (UnicodeError, ValueError):
        text = repr(str(path))[1:-1]
    return one_line(text)


def read_prefix(path: Path, limit: int, what: str = "file") -> tuple[bytes, bool]:
    """At most ``limit`` bytes from the start of the regular file ``path``, and whether the file has more."""
    where = f"{what} {shown_path(path)}"
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind:
            raise UnreadableFile(f"{where} is {kind}, not a regular file")
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise UnreadableFile(f"{where} not found") from None
    except (OSError, ValueError) as error:  # permission, a path through a file, a name too long, a NUL byte
        raise UnreadableFile(f"{where} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    with os.fdopen(descriptor, "rb") as handle:
        kind = _kind(os.fstat(handle.fileno()).st_mode)
        if kind:
            raise UnreadableFile(f"{where} is {kind}, not a regular file")
        try:
            data = handle.read(limit + 1)  # bounded even where stat's size is wrong (procfs says 0)
        except OSError as error:
            raise UnreadableFile(f"{where} cannot be read: {error.strerror or error}") from None
    return data[:limit], len(data) > limit


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """The whole of the regular file ``path``, which must hold at most ``limit`` bytes."""
    data, more = read_prefix(path, limit, what)
    if more:
        raise UnreadableFile(f"{what} {shown_path(path)} is larger than {_size(limit)}, far more than such a file holds")
    return data


def read_json(path: Path, what: str = "JSON file", limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path`` (bounded like ``read_bounded``); invalid JSON is an ``UnreadableFile`` too."""
    raw = read_bounded(path, limit, what)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableFile(f"{what} {shown_path(path)} is not valid JSON ({one_line(str(error))[:120]})") from None


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 2**10} KiB"
