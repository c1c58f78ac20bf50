"""Was the machine busy while a measurement ran? Other processes' CPU time on its cores, steal time, who it was.

A figure taken while another program ran on the same cores measures that program as much as the
configuration (one busy core turned a 15 ms p95 into 2,553 ms here). So every measurement is taken inside a
``watch``: the cores' busy time from the kernel (``/proc/stat`` through psutil) over the measurement's window,
minus what this process and its reaped workers spent (``getrusage``), is what *others* took; the hypervisor's
steal time is counted apart. A measurement whose others' share passes ``DISTURBED_SHARE`` is *disturbed*:
the tuner marks it, waits (bounded) for a quiet machine to measure again, and names the busy processes
wherever a verdict rests on it.

Workers sharing a store on one host never measure at the same time: ``host_measurement_lock`` is an
exclusive file lock in the cache, held around a measurement only, so a fleet on one machine does not
disturb its own figures (the others wait for it).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from autotune.reporting import Reporter, SilentReporter

DISTURBED_SHARE = 0.10
"""Others took more than this fraction of the measurement's cores (or the hypervisor stole it): disturbed.
Idle daemons take well under 2% here; one other busy thread on a 2-core machine takes 50%."""
QUIET_WAIT_ENV = "AUTOTUNE_QUIET_WAIT_S"
DEFAULT_QUIET_WAIT_S = 120.0
"""Seconds one run may spend in all waiting for a quiet machine before it only marks disturbed figures."""
MAX_WAIT_PER_MEASUREMENT_S = 30.0
QUIET_SAMPLE_S = 1.0
"""Length of each window sampled while waiting for the machine to become quiet."""
NAMED_SHARE = 0.05
"""A process is named as busy when it took at least this share of one core over the window."""
MAX_NAMED = 3
LOCK_NAME = "measure.lock"


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU times at one instant: per core (busy, steal) seconds, ours, and every other process's."""

    at: float
    cores: dict[int, tuple[float, float]]
    own_s: float
    processes: dict[int, tuple[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Disturbance:
    """How much of a measurement's cores other processes and the hypervisor took over its window."""

    window_s: float
    cores: int
    others_share: float
    """Other processes' CPU time over the cores' capacity in the window (0: alone, 1: every core fully taken)."""
    steal_share: float
    """Time the hypervisor ran other guests on these cores, over their capacity (VMs only)."""
    busy_processes: tuple[str, ...] = ()
    """The busiest other processes over the window: ``name (pid 123, 95% of a core)``."""

    @property
    def load(self) -> float:
        """Others' and the hypervisor's share together: what to compare two disturbances by."""
        return self.others_share + self.steal_share

    @property
    def disturbed(self) -> bool:
        """True when others or the hypervisor took more than ``DISTURBED_SHARE`` of the cores."""
        return self.others_share > DISTURBED_SHARE or self.steal_share > DISTURBED_SHARE

    def describe(self) -> str:
        """``other processes took 48% of the 2 cores (stress (pid 12, 96% of a core))`` and the steal, if any."""
        parts = [f"other processes took {self.others_share:.0%} of the {self.cores} core(s) autotune measures on"]
        if self.busy_processes:
            parts[0] += f" ({', '.join(self.busy_processes)})"
        if self.steal_share > 0.005:
            parts.append(f"the hypervisor stole {self.steal_share:.0%}")
        return "; ".join(parts)

    def as_context(self) -> dict[str, object]:
        """What a measurement's ``context["busy"]`` keeps (JSON; read back by ``from_context``)."""
        return {"others_share": round(self.others_share, 4), "steal_share": round(self.steal_share, 4),
                "window_s": round(self.window_s, 3), "cores": self.cores, "busy_processes": list(self.busy_processes),
                "disturbed": self.disturbed}

    @classmethod
    def from_context(cls, context: dict[str, object]) -> Disturbance | None:
        """The disturbance a measurement's context records, or None when it records none (older figures)."""
        busy = context.get("busy")
        if not isinstance(busy, dict):
            return None
        try:
            names = busy.get("busy_processes") or []
            return cls(window_s=float(busy["window_s"]), cores=int(busy["cores"]),
                       others_share=float(busy["others_share"]), steal_share=float(busy.get("steal_share", 0.0)),
                       busy_processes=tuple(str(n) for n in names) if isinstance(names, list) else ())
        except (KeyError, TypeError, ValueError):
            return None


def measured_cores() -> list[int]:
    """The cores this process (and so each worker it starts) may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity: every core
        return list(range(psutil.cpu_count() or 1))


def _descendants() -> list[psutil.Process]:
    """This process's living descendants (workers, a server kept running): their time is the measurement's own."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def own_cpu_s(living: Sequence[psutil.Process]) -> float:
    """CPU seconds of this process, every child it has reaped so far, and the descendants ``living`` still running.

    The kernel's child usage counts a child only once it is reaped; a server kept running through a
    measurement (the serving benchmark's llama-server) is counted from its own times, so its work is never
    mistaken for another process's.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for child in living:
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended between the listing and the reading: counted once it is reaped
            continue
        total += times.user + times.system
    return total


def core_times(cores: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Per core, cumulative (busy, steal) seconds from the kernel; idle and I/O wait are not busy."""
    per_cpu = psutil.cpu_times(percpu=True)
    times: dict[int, tuple[float, float]] = {}
    for core in cores:
        if core >= len(per_cpu):
            continue
        t = per_cpu[core]
        # user already includes guest time on Linux; irq/softirq are work done on the core too.
        busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        times[core] = (busy, getattr(t, "steal", 0.0))
    return times


def process_times(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """Every other process's name and cumulative CPU seconds (processes that cannot be read are left out)."""
    found: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["pid", "name", "cpu_times"]):
        info = process.info
        times = info.get("cpu_times")
        if info["pid"] in exclude or times is None:
            continue
        found[info["pid"]] = (str(info.get("name") or "?"), times.user + times.system)
    return found


def snapshot(cores: Sequence[int], with_processes: bool = True) -> CpuSnapshot:
    """The CPU times now, for ``disturbance`` to compare with a later one."""
    living = _descendants()  # listed once: our own time, and who is not "other"
    return CpuSnapshot(at=time.monotonic(), cores=core_times(cores), own_s=own_cpu_s(living),
                       processes=process_times({os.getpid(), *(p.pid for p in living)}) if with_processes else {})


def disturbance(before: CpuSnapshot, after: CpuSnapshot) -> Disturbance:
    """What others and the hypervisor took of the cores between two snapshots.

    Busy time on the cores minus our own CPU time is the others' (our time may have run on cores outside
    the set only where the affinity allows, which it does not). Processes are named from their own CPU
    times over the window; one that started and ended inside it is counted in the share but not named.
    """
    window = max(after.at - before.at, 1e-6)
    cores = [core for core in after.cores if core in before.cores]
    capacity = window * max(len(cores), 1)
    busy = sum(after.cores[c][0] - before.cores[c][0] for c in cores)
    steal = sum(after.cores[c][1] - before.cores[c][1] for c in cores)
    others = max(0.0, busy - (after.own_s - before.own_s))
    named = []
    for pid, (name, spent) in after.processes.items():
        if pid in before.processes:
            share = (spent - before.processes[pid][1]) / window
            if share >= NAMED_SHARE:
                named.append((share, f"{program(pid, name)} (pid {pid}, {share:.0%} of a core)"))
    named.sort(reverse=True)
    return Disturbance(window_s=window, cores=len(cores), others_share=min(1.0, others / capacity),
                       steal_share=min(1.0, max(0.0, steal) / capacity),
                       busy_processes=tuple(label for _, label in named[:MAX_NAMED]))


INTERPRETERS = ("python", "node", "java", "ruby", "perl", "sh", "bash")
"""Programs whose name says little: the script or module they run is named too."""


def program(pid: int, name: str) -> str:
    """``cc1plus``, or for an interpreter what it runs (``python -m pytest``, ``python bench.py``)."""
    if not name.startswith(INTERPRETERS):
        return name
    try:
        arguments = psutil.Process(pid).cmdline()[1:]
    except psutil.Error:
        return name
    shown = arguments[:2] if arguments[:1] == ["-m"] else [Path(a).name for a in arguments[:1]]
    return " ".join([name, *shown])[:60] if shown else name


class Watch:
    """The window of one measurement: ``result`` is filled when the ``with watching()`` block ends."""

    def __init__(self, cores: Sequence[int]) -> None:
        self.cores = list(cores)
        self.result: Disturbance | None = None


@contextmanager
def watching(cores: Sequence[int] | None = None) -> Iterator[Watch]:
    """Account for what other processes take of ``cores`` (default: this process's) while the block runs."""
    watch = Watch(cores if cores is not None else measured_cores())
    before = snapshot(watch.cores)
    try:
        yield watch
    finally:
        watch.result = disturbance(before, snapshot(watch.cores))


def sample(seconds: float = QUIET_SAMPLE_S, cores: Sequence[int] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> Disturbance:
    """How busy the machine is now: what others take of the cores over ``seconds`` while this process sleeps."""
    with watching(cores) as watch:
        sleep(seconds)
    assert watch.result is not None
    return watch.result


def busy_warning(found: Disturbance) -> str | None:
    """The one-line warning at the start of a run when the machine is already busy (None when it is quiet)."""
    if not found.disturbed:
        return None
    return (f"the machine is busy: {found.describe()}; autotune waits for quiet moments to measure, and marks "
            "figures taken while it stays busy (stop those programs for figures that are the configuration's own)")


def quiet_wait_budget() -> float:
    """Seconds a run may wait in all for a quiet machine (``AUTOTUNE_QUIET_WAIT_S`` overrides; 0 never waits)."""
    raw = os.environ.get(QUIET_WAIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_QUIET_WAIT_S
    try:
        return max(0.0, float(raw))
    except ValueError:
        return DEFAULT_QUIET_WAIT_S


class QuietWait:
    """A run's allowance of time to wait for a quiet machine before re-measuring a disturbed figure."""

    def __init__(self, total_s: float | None = None, reporter: Reporter | None = None,
                 sample_s: float = QUIET_SAMPLE_S) -> None:
        self.remaining_s = quiet_wait_budget() if total_s is None else total_s
        self.reporter: Reporter = reporter or SilentReporter()
        """Told when a measurement waits for a quiet machine (the run's one way of reporting)."""
        self.sample_s = sample_s
        self.disturbed: list[Disturbance] = []
        """Every disturbance the run kept (re-measuring did not help, or no time was left to wait)."""

    def until_quiet(self) -> Disturbance | None:
        """Wait (bounded) until a sample window is quiet; the quiet sample, or None when time ran out."""
        deadline = time.monotonic() + min(self.remaining_s, MAX_WAIT_PER_MEASUREMENT_S)
        started = time.monotonic()
        try:
            while time.monotonic() + self.sample_s <= deadline:
                found = sample(self.sample_s)
                if not found.disturbed:
                    return found
            return None
        finally:
            self.remaining_s = max(0.0, self.remaining_s - (time.monotonic() - started))


def disturbed_note(disturbances: Sequence[Disturbance], of: int, what: str = "measurements") -> str | None:
    """One sentence for a verdict resting on disturbed figures: how many, by whom (None when none was)."""
    shown = [d for d in disturbances if d.disturbed]
    if not shown:
        return None
    worst = max(shown, key=lambda d: d.load)
    names = list(dict.fromkeys(name.split(" (")[0] for d in shown for name in d.busy_processes))
    who = f" (busy: {', '.join(names[:MAX_NAMED])})" if names else ""
    return (f"{len(shown)} of {of} {what} were taken while the machine was busy{who}; at worst {worst.describe()} — "
            "these figures may be the load's, not the configuration's: rerun when the machine is quiet")


def disturbances_of(contexts: Sequence[dict[str, Any]]) -> list[Disturbance]:
    """The recorded disturbances of measurements (by their contexts) that were disturbed."""
    found = [Disturbance.from_context(context) for context in contexts]
    return [d for d in found if d is not None and d.disturbed]


@contextmanager
def host_measurement_lock(folder: Path | None = None) -> Iterator[float]:
    """Hold the host's measurement lock for the block; yields the seconds spent waiting for it.

    One exclusive ``flock`` on ``<cache>/locks/measure.lock``: every tuner using this cache on this host
    measures one configuration at a time. The kernel drops the lock when its holder dies (kill -9
    included), so a dead worker never blocks the others. Where the file cannot be opened (a read-only
    cache) or locks are not supported, the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; measurements are not serialised there
        yield 0.0
        return
    if folder is None:
        from autotune.store.cache import cache_dir

        folder = cache_dir() / "locks"
    started = time.monotonic()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a")  # noqa: SIM115 - held across the yield
    except OSError:
        yield 0.0
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
