"""Isolated worker processes: every measurement runs in a fresh interpreter.

The parent sends a pickled ``WorkerTask`` on the child's stdin; the child runs it and pickles a
``WorkerResult`` into a file (runtimes print to stdout/stderr freely, so those are only kept as a
tail for error messages). The parent enforces a wall-clock timeout and a memory guard (the
child's resident memory is polled), so a crash, hang or runaway allocation becomes a failed
result with its reason, never a dead tuner.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

POLL_S = 0.05


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


def run_in_worker(task: WorkerTask, *, timeout_s: float, memory_limit_bytes: int | None = None, env: dict[str, str] | None = None) -> WorkerResult:
    """Run ``task`` in a fresh Python process with a timeout and a memory guard."""
    with tempfile.TemporaryDirectory(prefix="autotune-worker-") as scratch:
        result_path = Path(scratch) / "result.pickle"
        log_path = Path(scratch) / "output.log"
        child_env = dict(os.environ)
        # The child must import what the parent imported (test modules, source checkouts).
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        child_env.update(env or {})
        started = time.perf_counter()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "autotune.worker", str(result_path)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=child_env,
            )
            assert process.stdin is not None
            process.stdin.write(pickle.dumps(task))
            process.stdin.close()
            failure, polled_peak = _supervise(process, started, timeout_s, memory_limit_bytes)
        wall = time.perf_counter() - started
        tail = log_path.read_text(errors="replace")[-2000:]
        if failure is None and result_path.exists():
            result: WorkerResult = pickle.loads(result_path.read_bytes())
            result.wall_s, result.output_tail = wall, tail
            if result.peak_rss_bytes is None:
                result.peak_rss_bytes = polled_peak
            return result
        if failure is None:
            failure = f"worker exited with status {process.returncode} ({_describe_exit(process.returncode)})"
            last = [line for line in tail.strip().splitlines() if line.strip()][-1:]
            if last:
                failure += f": {last[0][:300]}"
        return WorkerResult(ok=False, error=failure, peak_rss_bytes=polled_peak, wall_s=wall, output_tail=tail)


def _supervise(process: subprocess.Popen[bytes], started: float, timeout_s: float, memory_limit: int | None) -> tuple[str | None, int]:
    """Wait for the child, killing it on timeout or when its memory passes the guard."""
    peak = 0
    try:
        handle = psutil.Process(process.pid)
    except psutil.NoSuchProcess:
        handle = None
    while process.poll() is None:
        if handle is not None:
            try:
                rss = handle.memory_info().rss + sum(c.memory_info().rss for c in handle.children(recursive=True))
                peak = max(peak, rss)
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


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return "crashed before reporting a result"


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


def _child_main(result_path: str) -> int:
    task: WorkerTask = pickle.loads(sys.stdin.buffer.read())
    try:
        value = task.function(*task.args, **task.kwargs)
        result = WorkerResult(ok=True, value=value, peak_rss_bytes=peak_rss_self())
    except BaseException as error:  # noqa: BLE001 - report everything, including KeyboardInterrupt
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        traceback.print_exc()
        result = WorkerResult(ok=False, error=detail, peak_rss_bytes=peak_rss_self())
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as handle:
        pickle.dump(result, handle)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    # Run through the importable module, not this __main__ copy, so results pickle as autotune.worker classes.
    from autotune.worker import _child_main as child_main

    sys.exit(child_main(sys.argv[1]))
