"""Saved KV contexts: a deep fill is prefilled once, then loaded by the next measurement whose cache would hold it.

A single-stream measurement's deep run (``autotune.plugins.protocol``) fills the KV cache to ``workload.deep_start``
before it times decode steps there; only those steps are reported, never the fill. The fill is most of the work
(1,983 tokens prefilled to time 64 steps: 5 s of a 10 s measurement of Gemma 3 270M on 2 cores), and the
confirmation rounds measure the chosen configuration up to five times more, each in a fresh worker. So the first
fill of a configuration is saved here, under a key the backend derives from what sets the cache's contents (the
artifact, the KV-cache settings, the context, the depth), and later measurements load all of it but its last
micro-batch (``KeptFill.tail``), which they prefill.

What a decode step costs depends on how many positions it attends to, not on their values, so a loaded fill times
the same steps as a prefilled one where it holds the same positions (SmolLM2-135M: a tie, ``bench/kept_fill.py``).
Where it does not, the backend must not keep it: llama.cpp saves only the window of a sliding-window layer's cache,
and Gemma 3's decode steps after a loaded fill ran 5-8% faster than after a prefill. The session checks the saved
tokens are exactly the fill's before using them. Files are written whole or not at all (a temporary file renamed into place), and the folder is kept under
``KEEP_BYTES`` by removing the oldest files first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from autotune.store.cache import cache_dir, key_digest
from autotune.store.page_cache import write_out

FOLDER = "contexts"
KEEP_BYTES = 1 << 30
"""Saved contexts kept at most, in bytes (a 1,983-position f16 cache of Gemma 3 270M is 36 MiB)."""


@dataclass(frozen=True)
class KeptFill:
    """Where a deep fill is kept (``path``), and how many of its last tokens are prefilled even when it is loaded
    (``tail``: the runtime's micro-batch, so the steps after it find the memory caches as a prefill leaves them;
    after a whole loaded fill SmolLM2-135M's steps ran 4% faster than after a prefill, with the tail prefilled 0.7%)."""

    path: Path
    tail: int


def kept_fill(key: object, tail: int) -> KeptFill:
    """The ``KeptFill`` of the context identified by the JSON-able ``key`` (its file may not exist yet)."""
    folder = cache_dir() / FOLDER
    folder.mkdir(exist_ok=True)
    return KeptFill(folder / f"{key_digest(key)}.ctx", max(1, tail))


def mark_used(path: Path) -> None:
    """Note that ``path`` was just loaded, so ``prune`` removes it after the contexts not used since."""
    with suppress(OSError):
        os.utime(path)


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a context to; renamed to ``path`` if the block succeeds and the
    file is not empty, removed otherwise, so a reader sees a whole file or none (kill -9 mid-write included: the
    next ``prune`` removes what is left)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        if temporary.exists() and temporary.stat().st_size > 0:
            # Written out now: left to the kernel's writeback, tens of MiB of dirty pages were written while the
            # decode steps after the fill were being timed.
            write_out(temporary)
            os.replace(temporary, path)
            prune(path.parent)
    finally:
        with suppress(OSError):
            temporary.unlink()


def prune(folder: Path, keep_bytes: int = KEEP_BYTES) -> None:
    """Remove the oldest files of ``folder`` until the rest fit ``keep_bytes``; any other process's leftover
    temporary files older than a minute go first."""
    entries: list[tuple[float, int, Path]] = []
    for path in folder.iterdir():
        with suppress(OSError):
            status = path.stat()
            entries.append((status.st_mtime, status.st_size, path))
    for mtime, _, path in entries:
        if path.suffix == ".tmp" and mtime < time.time() - 60:
            with suppress(OSError):
                path.unlink()
    kept = [entry for entry in entries if entry[2].suffix == ".ctx"]
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= keep_bytes:
            break
        with suppress(OSError):
            path.unlink()
        total -= size
