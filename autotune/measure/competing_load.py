"""A synthetic competing load: part of the machine kept busy on purpose while a configuration is measured.

A deployment rarely has the machine to itself, and some settings collapse when it does not: llama.cpp with
one thread per core waits at every thread barrier for a peer the kernel descheduled (measured here through
llama-server, one core busy with another process: ``-t 2`` 4.8 tok/s and p95 1.7 s against ``-t 1`` 43-45 tok/s
and 30 ms). So the confirmation also measures under a load that autotune starts itself: ``share`` cores'
worth of busy loops, each pinned to one of the last cores this process may use (whole cores fully busy, the
fraction as a duty cycle on one more core).

The loops are children of this process, so the busy accounting (``autotune.measure.busy``) counts their CPU
time as autotune's own, never as a stranger disturbing the figures. They are stopped for sure: when the block
ends, however it ends (an error, Ctrl-C), and each loop also ends by itself when its parent is gone (killed
with SIGKILL) or after ``max_s``, so no loop outlives the run that started it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from autotune.measure.busy import measured_cores

PERIOD_S = 0.01
"""Duty-cycle period of a partial core: short against a decode step (10-50 ms), so every step meets the load."""
STOP_WAIT_S = 2.0
"""How long a loop gets to end on SIGTERM before it is killed."""

# Run with ``python -S -c``: no site packages and no import of autotune, so a loop starts in milliseconds and
# holds a few MiB. It pins itself before spinning, checks its parent every period (a loop whose parent died
# exits), and ends after its lifetime whatever happens.
_LOOP = """
import os, sys, time
duty, parent, core, lifetime, period = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
try:
    os.sched_setaffinity(0, {core})
except (AttributeError, OSError):
    pass
end = time.monotonic() + lifetime
try:
    while os.getppid() == parent and time.monotonic() < end:
        start = time.monotonic()
        while time.monotonic() - start < period * duty:
            pass
        if duty < 1:
            time.sleep(period * (1 - duty))
except KeyboardInterrupt:
    pass
"""


@dataclass(frozen=True)
class LoadPlan:
    """Which cores are kept busy, and how much of each (1.0: the whole core)."""

    duties: tuple[tuple[int, float], ...]

    @property
    def share(self) -> float:
        """Cores' worth of load in all."""
        return sum(duty for _, duty in self.duties)

    def describe(self) -> str:
        """``1 core busy (core 1)`` or ``0.5 of a core busy (core 1)``."""
        share = self.share
        amount = f"{share:g} core{'s' if share > 1 else ''}" if share >= 1 else f"{share:g} of a core"
        return f"{amount} busy (core{'s' if len(self.duties) > 1 else ''} {', '.join(str(c) for c, _ in self.duties)})"


def plan_load(share: float, cores: Sequence[int] | None = None) -> LoadPlan:
    """The cores a load of ``share`` cores keeps busy: the last ones this process may use, whole cores first.

    Raises ``ValueError`` when ``share`` is not above 0 or asks for more cores than there are.
    """
    usable = list(cores) if cores is not None else measured_cores()
    if not share > 0 or not math.isfinite(share):
        raise ValueError(f"a competing load needs a share above 0 cores, got {share}")
    if share > len(usable):
        raise ValueError(f"a competing load of {share:g} cores is more than the {len(usable)} core(s) autotune may use")
    whole, part = int(share), share - int(share)
    duties = [(core, 1.0) for core in usable[len(usable) - whole:]] if whole else []
    if part > 1e-9:
        duties.insert(0, (usable[len(usable) - whole - 1], round(part, 6)))
    return LoadPlan(tuple(duties))


@contextmanager
def competing_load(share: float, max_s: float, cores: Sequence[int] | None = None) -> Iterator[LoadPlan]:
    """Keep ``share`` cores busy while the block runs (at most ``max_s`` seconds); stopped when the block ends."""
    plan = plan_load(share, cores)
    loops: list[subprocess.Popen[bytes]] = []
    try:
        for core, duty in plan.duties:
            loops.append(subprocess.Popen(
                [sys.executable, "-S", "-c", _LOOP, repr(duty), str(os.getpid()), str(core), repr(max(1.0, max_s)),
                 repr(PERIOD_S)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield plan
    finally:
        stop(loops)


def stop(loops: Sequence[subprocess.Popen[bytes]]) -> None:
    """End every loop: SIGTERM, then SIGKILL for one that does not end within ``STOP_WAIT_S``; reaped either way."""
    for loop in loops:
        if loop.poll() is None:
            loop.terminate()
    for loop in loops:
        try:
            loop.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait()
