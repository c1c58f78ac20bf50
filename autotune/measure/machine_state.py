"""What could explain an outlier, recorded with each measurement: load average, CPU frequency, busy processes,
and how much of the model file was in the page cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def page_cache_fraction(path: Path) -> float | None:
    """Fraction of a file's pages resident in the page cache (Linux/macOS ``mincore``), or None if unknown.

    A cold model file makes load time (and the first runs) slower; recording this explains such outliers.
    """
    import ctypes
    import ctypes.util
    import mmap

    try:
        length = path.stat().st_size
        if not path.is_file() or length == 0:
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = (ctypes.c_ubyte * pages)()
        with path.open("rb") as handle:
            # Mapping does not read the file; mincore only asks the kernel which pages are resident.
            address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, handle.fileno(), 0)
            if address in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                status = libc.mincore(address, length, vector)
            finally:
                libc.munmap(address, length)
        if status != 0:
            return None
        return sum(byte & 1 for byte in vector) / pages
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def busy_processes(limit: int = 3, own: int | None = None) -> list[str]:
    """Other processes using CPU right now (name and percent of one core over 0.1 s)."""

    own = own or os.getpid()
    candidates = []
    for process in psutil.process_iter(["pid", "name"]):
        if process.info["pid"] == own:
            continue
        try:
            process.cpu_percent(None)
            candidates.append(process)
        except psutil.Error:
            continue
    time.sleep(0.1)
    usage = []
    for process in candidates:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        if percent >= 20:
            usage.append((percent, f"{process.info['name']} ({percent:.0f}%)"))
    return [label for _, label in sorted(usage, reverse=True)[:limit]]


def machine_context(artifact_path: Path | None = None) -> dict[str, object]:
    """What could explain an outlier: load average, CPU frequency, busy processes, a cold model file."""
    context: dict[str, object] = {}
    try:
        context["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    freq = psutil.cpu_freq()
    if freq is not None and freq.current:
        context["cpu_mhz"] = round(freq.current)
    busy = busy_processes()
    if busy:
        context["busy_processes"] = busy
    if artifact_path is not None:
        fraction = page_cache_fraction(artifact_path)
        if fraction is not None:
            context["model_in_page_cache"] = round(fraction, 3)
    return context
