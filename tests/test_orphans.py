"""kill -9 of a real tuner mid-trial leaves no process of it running and no folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from autotune.measure.worker import remove_orphaned_scratch

TUNER = """
from pathlib import Path
from autotune.budget import Budget
from autotune.testing import FakeBackend, manager_with
from autotune.testing.conformance import example_hardware
from autotune import SilentReporter, TuneOptions, Tuner
from autotune.workload import Workload

model = Path({model!r})
# The first configuration measured (the starting point, f16) hangs: the tuner waits on its worker.
backend = FakeBackend(hang_on={{"quant": "f16"}})
Tuner(model, Budget.parse("2GB", "50ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64, depth=0),
      TuneOptions(trials=2, timeout_s=600, measure_quality=False, confirm_rounds=0),
      manager=manager_with(backend, builtins=True), hardware=example_hardware(), reporter=SilentReporter()).run()
"""


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is a POSIX signal")
def test_kill_9_of_the_tuner_takes_its_worker_and_leaves_no_folder(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    env = {**os.environ, "AUTOTUNE_CACHE": str(tmp_path / "cache")}
    tuner = subprocess.Popen([sys.executable, "-c", TUNER.format(model=str(model))], env=env)
    try:
        handle = psutil.Process(tuner.pid)
        assert wait_for(lambda: any("autotune.measure.worker" in " ".join(c.cmdline()) for c in handle.children()), 60), \
            "the tuner never started a worker"
        worker = next(c for c in handle.children() if "autotune.measure.worker" in " ".join(c.cmdline()))
        scratch = list(Path(tempfile.gettempdir()).glob(f"autotune-worker-{tuner.pid}-*"))
        assert scratch, "the worker's scratch folder is named after its tuner"

        os.kill(tuner.pid, signal.SIGKILL)
        tuner.wait(timeout=10)
        assert wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 5), \
            "the worker outlived its tuner"
        assert all(folder.exists() for folder in scratch)  # nobody could clean up after a kill -9 ...
        assert remove_orphaned_scratch() >= 1  # ... so the next run does
        assert not any(folder.exists() for folder in scratch)
    finally:
        if tuner.poll() is None:
            tuner.kill()
