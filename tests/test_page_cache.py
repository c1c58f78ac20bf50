"""Model files autotune wrote are dropped from the page cache, so their first measurement reads them from the disk."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import pytest

from autotune.store.page_cache import drop_cached_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux")


def resident_pages(path: Path) -> int:
    """How many of ``path``'s pages are in the page cache (mincore over a read-only shared mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    vector = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
    handle = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, handle, 0)
        try:
            if libc.mincore(address, size, vector) != 0:
                pytest.skip(f"mincore failed: {os.strerror(ctypes.get_errno())}")
        finally:
            libc.munmap(address, size)
    finally:
        os.close(handle)
    return sum(v & 1 for v in vector)


def test_a_written_model_file_leaves_the_page_cache(tmp_path: Path) -> None:
    folder = tmp_path / "artifact"
    folder.mkdir()
    model = folder / "model.gguf"
    model.write_bytes(os.urandom(4 * 2**20))
    (folder / "artifact.json").write_text("{}")
    assert resident_pages(model) > 0  # just written: in the page cache
    drop_cached_pages(folder)
    assert resident_pages(model) == 0
    assert model.read_bytes()[:4]  # still the same file, read from the disk again
    drop_cached_pages(tmp_path / "missing")  # nothing to do, no error


def test_a_source_several_backends_read_is_dropped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autotune.search.sources as sources
    from autotune import SilentReporter
    from autotune.plugins.backend import Availability
    from autotune.testing import FakeBackend

    class Other(FakeBackend):
        name = "other-fake"

    dropped: list[Path] = []
    monkeypatch.setattr(sources, "drop_cached_pages", dropped.append)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    resolved = sources.resolve(model, [FakeBackend(), Other()], [], SilentReporter(),
                               availability_of=lambda backend: Availability(True))
    assert len(resolved) == 2 and dropped == [Path(resolved[0].source.path)]
