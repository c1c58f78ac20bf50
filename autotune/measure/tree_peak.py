"""The tuner's own memory: the peak resident memory of this process and its workers together.

The tool is meant to run on the device it tunes for, so its own footprint must fit the memory budget
too. Workers run one at a time while this process waits for them, so the tree's peak is the larger of
this process's own peak and, for each worker, what this process held when it ended plus the worker's
peak (with the worker's own children: a server it started). ``run_in_worker`` notes every worker here;
the profile reports ``tuner_peak_tree_bytes`` and the run warns when it passed the budget.
"""

from __future__ import annotations

import resource
import sys
import threading

import psutil

_lock = threading.Lock()
_workers_peak = 0
"""The largest (this process's resident memory + a worker's peak) noted since the last ``reset``."""


def reset() -> None:
    """Start counting afresh (at the start of a tuning run): earlier workers of this process are not its own."""
    global _workers_peak
    with _lock:
        _workers_peak = 0


def note_worker(peak_bytes: int | None) -> None:
    """Record a finished worker's peak resident memory (its children included) beside this process's now."""
    global _workers_peak
    if not peak_bytes:
        return
    with _lock:
        _workers_peak = max(_workers_peak, psutil.Process().memory_info().rss + peak_bytes)


def tuner_peak_tree_bytes() -> int:
    """The peak of this process and its workers together so far: this process's own peak or the largest
    worker's peak on top of what this process held beside it, whichever is larger."""
    with _lock:
        return max(peak_rss_self(), _workers_peak)


def peak_rss_self() -> int:
    """Peak resident memory of this process so far, in bytes.

    Linux: ``VmHWM`` from /proc/self/status. ``ru_maxrss`` is wrong there for a worker: a child
    started with vfork+exec inherits its parent's high-water mark (a 45 MiB worker of a 300 MiB
    tuner reported 344 MiB). Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
