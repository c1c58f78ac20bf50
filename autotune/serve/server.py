"""An inference server started for real on loopback: ready when it answers, watched for memory, always stopped.

The server runs in a process group of its own with its output in a log file; ``started`` waits until its
readiness URL answers 200 (llama-server answers 503 while it loads the model), samples the resident memory of
the whole group while it runs (``peak_rss_bytes``), and stops it on the way out — SIGTERM, then SIGKILL — so
nothing outlives a test, a measurement or an interrupted run; and on Linux it dies with the process that started
it, so not even a kill -9 of that process leaves a server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from autotune.errors import AutotuneError

LOG_TAIL_BYTES = 3000
"""How much of the server's log an error quotes."""
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ServerError(AutotuneError):
    """A server that exited or never became ready (the message quotes the end of its log)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A started server: its process, address and the peak memory its process group reached so far."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    peak_rss_bytes: int = 0
    _stop_sampling: threading.Event = field(default_factory=threading.Event)

    def log_tail(self) -> str:
        """The end of the server's log."""
        try:
            data = self.log.read_bytes()[-LOG_TAIL_BYTES:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace")

    def sample_rss(self) -> None:
        """Add the group's current resident memory to the peak (the server and any process it started)."""
        try:
            parent = psutil.Process(self.process.pid)
            rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
        except psutil.Error:  # gone between the calls
            return
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _dies_with(parent_pid: int) -> Callable[[], None] | None:
    """What the child runs before ``exec``: ask Linux to SIGKILL it when its parent dies.

    The server has a session of its own (so stopping it stops its whole group), which also means a kill -9 of
    the process that started it would leave it running and holding its port and memory; ``PR_SET_PDEATHSIG``
    closes that. It fires when the *thread* that started the server ends, so ``started`` must be entered by a
    thread that outlives the server (every caller's own ``with`` does). None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not import between fork and exec

    def set_parent_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(1)

    return set_parent_death_signal


@contextmanager
def started(argv: Sequence[str], port: int, log: Path, ready_path: str = "/health",
            ready_timeout_s: float = 120.0, sample_every_s: float = 0.2) -> Iterator[RunningServer]:
    """Run ``argv`` (which must make the server listen on 127.0.0.1:``port``) until it is ready; stop it after."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        try:
            process = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=_dies_with(os.getpid()))
        except OSError as error:
            raise ServerError(f"cannot start {argv[0]}: {error.strerror or error}") from None
    server = RunningServer(process=process, base_url=f"http://127.0.0.1:{port}", log=log)

    def sample() -> None:
        while not server._stop_sampling.wait(sample_every_s):
            server.sample_rss()

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not _ready(server.base_url + ready_path):
            if process.poll() is not None:
                raise ServerError(f"{Path(argv[0]).name} exited with status {process.returncode} before it was "
                                  f"ready; its log ends:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"{Path(argv[0]).name} was not ready within {ready_timeout_s:.0f} s; its log "
                                  f"ends:\n{server.log_tail()}")
            time.sleep(0.2)
        server.sample_rss()
        sampler.start()
        yield server
    finally:
        server._stop_sampling.set()
        if sampler.is_alive():
            sampler.join(timeout=5)
        _stop(process)
