"""Isolated worker processes: every measurement runs in a fresh interpreter.

The parent sends a pickled ``WorkerTask`` on the child's stdin; the child runs it and pickles a
``WorkerResult`` into a file (runtimes print to stdout/stderr freely, so those are only kept as a
tail for error messages). The parent enforces a wall-clock timeout and a memory guard (the
child's resident memory is polled), so a crash, hang or runaway allocation becomes a failed
result with its reason, never a dead tuner.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from autotune.measure import tree_peak
from autotune.measure.tree_peak import peak_rss_self

POLL_S = 0.05
CHILDREN_SCAN_S = 1.0
"""How often the supervisor looks for a worker's children (a server it started) to add their memory: finding them
walks all of /proc, which every 0.05 s took 6% of a core from the measurement it watched on a 2-core machine."""
WORKER_ENV = {"TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
"""Every worker runs offline (no model hub is consulted for local models) and without progress bars,
which converters and runtimes would otherwise draw into the captured output."""
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
INTERRUPTIONS = ("SIGINT", "SIGTERM", "SIGHUP")
"""Signals that stop a worker from outside: the run was interrupted, the configuration did not fail. The parent
raises ``KeyboardInterrupt`` so no caller records it as a result (SIGKILL is also the OOM killer's: a failure)."""


@dataclass
class WorkerTask:
    """A callable and its arguments, run in the child. The callable must be importable by name."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerResult:
    """What came back: a value, or the reason there is none."""

    ok: bool
    value: Any = None
    error: str | None = None
    peak_rss_bytes: int | None = None
    wall_s: float = 0.0
    output_tail: str = ""
    error_type: str | None = None
    """The class name of the exception the task raised (``BackendUnavailable``, ``ValueError``, ...)."""
    signal: str | None = None
    """The signal the child died by (``SIGILL``, ``SIGSEGV``, ...), when it killed itself; never the guard's own kill."""


def run_in_worker(task: WorkerTask, *, timeout_s: float, memory_limit_bytes: int | None = None, env: dict[str, str] | None = None) -> WorkerResult:
    """Run ``task`` in a fresh Python process with a timeout and a memory guard."""
    try:
        payload = pickle.dumps(task)
    except Exception as error:  # noqa: BLE001 - e.g. a backend class defined inside a function: its plugin's fault
        from autotune.plugins.boundary import PluginFault

        return WorkerResult(ok=False, error=f"cannot be sent to a worker process ({error!r}): a backend and what it "
                            "holds must pickle (define its class at module level)", error_type=PluginFault.__name__)
    with scratch_folder("worker") as scratch:
        result_path = Path(scratch) / "result.pickle"
        log_path = Path(scratch) / "output.log"
        child_env = dict(os.environ)
        # The child must import what the parent imported (test modules, source checkouts).
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        child_env.update({**WORKER_ENV, **(env or {})})
        started = time.perf_counter()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "autotune.measure.worker", str(result_path), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=child_env,
            )
            assert process.stdin is not None
            try:
                process.stdin.write(payload)
                process.stdin.close()
                failure, polled_peak = _supervise(process, started, timeout_s, memory_limit_bytes)
            except BaseException:  # Ctrl-C or SIGTERM of the tuner: its worker goes with it, now
                _kill(process)
                raise
        wall = time.perf_counter() - started
        tree_peak.note_worker(polled_peak)  # the worker and its children, as polled (the tuner's own footprint)
        tail = log_path.read_text(errors="replace")[-2000:]
        if failure is None and signal_name(process.returncode) in INTERRUPTIONS:
            # Stopped from outside (the terminal's Ctrl-C, a service manager's SIGTERM): no result of the task.
            raise KeyboardInterrupt(f"the worker was stopped by {signal_name(process.returncode)}")
        if failure is None and result_path.exists():
            result: WorkerResult = pickle.loads(result_path.read_bytes())
            if result.error_type == KeyboardInterrupt.__name__:
                raise KeyboardInterrupt("the worker was interrupted")
            result.wall_s, result.output_tail = wall, tail
            tree_peak.note_worker(result.peak_rss_bytes)  # exact, where polling may miss a short peak
            if result.peak_rss_bytes is None:
                result.peak_rss_bytes = polled_peak
            return result
        died_by = None
        if failure is None:
            died_by = signal_name(process.returncode)
            failure = f"worker exited with status {process.returncode} ({_describe_exit(process.returncode)})"
            last = [line for line in tail.strip().splitlines() if line.strip()][-1:]
            if last:
                failure += f": {last[0][:300]}"
        return WorkerResult(ok=False, error=failure, peak_rss_bytes=polled_peak, wall_s=wall, output_tail=tail,
                            signal=died_by)


def _supervise(process: subprocess.Popen[bytes], started: float, timeout_s: float, memory_limit: int | None) -> tuple[str | None, int]:
    """Wait for the child, killing it on timeout or when its memory passes the guard."""
    peak = 0
    try:
        handle = psutil.Process(process.pid)
    except psutil.NoSuchProcess:
        handle = None
    children: list[psutil.Process] = []
    scanned = -CHILDREN_SCAN_S
    while process.poll() is None:
        if handle is not None:
            try:
                now = time.perf_counter()
                if now - scanned >= CHILDREN_SCAN_S:
                    children, scanned = handle.children(recursive=True), now
                peak = max(peak, handle.memory_info().rss + sum(_rss(c) for c in children))
            except psutil.Error:
                pass
        if memory_limit is not None and peak > memory_limit:
            _kill(process)
            return f"killed by the memory guard: resident memory passed {memory_limit / 2**20:.0f} MiB", peak
        if time.perf_counter() - started > timeout_s:
            _kill(process)
            return f"timed out after {timeout_s:g} s", peak
        time.sleep(POLL_S)
    return None, peak


def _rss(process: psutil.Process) -> int:
    """Resident memory of a worker's child, 0 once it is gone."""
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def signal_name(code: int | None) -> str | None:
    """``SIGILL`` for a child that exited with status -4, None for a normal exit."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _describe_exit(code: int | None) -> str:
    name = signal_name(code)
    return f"killed by {name}" if name else "crashed before reporting a result"


def scratch_folder(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary folder named after this process, so a later run can tell it was orphaned."""
    return tempfile.TemporaryDirectory(prefix=f"autotune-{kind}-{os.getpid()}-")


def remove_orphaned_scratch() -> int:
    """Delete scratch folders whose process is gone (a tuner or worker killed with kill -9); return how many."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob("autotune-*-*-*"):
        parts = path.name.split("-")
        if len(parts) < 4 or not parts[2].isdigit() or not path.is_dir() or psutil.pid_exists(int(parts[2])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _die_with(parent_pid: int) -> None:
    """Make this worker die with its tuner: a kill -9 of the tuner must not leave it running unsupervised.

    Linux delivers SIGKILL when the parent goes (``PR_SET_PDEATHSIG``); a watchdog thread covers other
    systems and the moment before the request took effect.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="autotune-parent-watch", daemon=True).start()


def _child_main(result_path: str, parent_pid: int | None = None) -> int:
    if parent_pid is not None:
        _die_with(parent_pid)
    try:
        # A runtime that crashes is reported by its signal; a core dump of a multi-GB model helps nobody here.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    task: WorkerTask = pickle.loads(sys.stdin.buffer.read())
    try:
        value = task.function(*task.args, **task.kwargs)
        result = WorkerResult(ok=True, value=value, peak_rss_bytes=peak_rss_self())
    except BaseException as error:  # noqa: BLE001 - report everything, including KeyboardInterrupt
        from autotune.errors import AutotuneError

        # autotune's own errors carry a message written for the user; anything else gets its type too.
        detail = str(error) if isinstance(error, AutotuneError) else \
            "".join(traceback.format_exception_only(type(error), error)).strip()
        traceback.print_exc()
        result = WorkerResult(ok=False, error=detail, peak_rss_bytes=peak_rss_self(), error_type=type(error).__name__)
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as handle:
        pickle.dump(result, handle)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    # Run through the importable module, not this __main__ copy, so results pickle as autotune.measure.worker classes.
    from autotune.measure.worker import _child_main as child_main

    sys.exit(child_main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
