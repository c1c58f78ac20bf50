"""A busy machine: measurements know what other processes took of their cores, and a fleet on one host takes turns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from autotune.measure import busy
from autotune.measure.busy import CpuSnapshot, Disturbance, QuietWait, disturbance, host_measurement_lock
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params
from autotune.reporting import SilentReporter
from autotune.testing import FakeBackend
from autotune.workload import Workload

WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=1, depth=0)
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


class WindowedFake(FakeBackend):
    """The fake backend measuring here, writing the wall-clock window of each measurement into its context."""

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        started = time.time()
        measurement = super().measure(artifact, params, workload)
        measurement.context["window"] = [started, time.time()]
        return measurement


@contextmanager
def competitors(seconds: float, cores: list[int]) -> Iterator[list[int]]:
    """Bounded busy loops, one pinned to each of ``cores``: a real competing program, not a child of this one
    (a shell starts each in the background and exits, as another user's program would be)."""
    pids = []
    for core in cores:
        spawned = subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable,
                                  SPIN.format(seconds=seconds)], capture_output=True, text=True, check=True)
        pids.append(int(spawned.stdout.strip()))
        os.sched_setaffinity(pids[-1], {core})
    try:
        time.sleep(0.3)  # the interpreters start before the window opens
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def snap(at: float, busy_s: float, own_s: float, steal_s: float = 0.0,
         processes: dict[int, tuple[str, float]] | None = None) -> CpuSnapshot:
    return CpuSnapshot(at=at, cores={0: (busy_s / 2, steal_s / 2), 1: (busy_s / 2, steal_s / 2)}, own_s=own_s,
                       processes=processes or {})


def test_others_share_is_the_cores_busy_time_minus_our_own() -> None:
    before = snap(0.0, 100.0, 10.0, processes={7: ("stress", 50.0), 8: ("sshd", 1.0)})
    after = snap(10.0, 114.0, 18.0, steal_s=3.0, processes={7: ("stress", 55.0), 8: ("sshd", 1.01)})
    found = disturbance(before, after)
    # 14 s busy on 2 cores over 10 s, 8 s of it ours: others took 6 of 20 core-seconds; 3 stolen.
    assert found.others_share == pytest.approx(0.3) and found.steal_share == pytest.approx(0.15)
    assert found.disturbed and found.busy_processes == ("stress (pid 7, 50% of a core)",)
    assert "30% of the 2 core(s)" in found.describe() and "stole 15%" in found.describe()
    assert busy.program(os.getpid(), "python").startswith("python")  # an interpreter: what it runs is named
    assert busy.program(os.getpid(), "cc1plus") == "cc1plus"
    quiet = disturbance(before, snap(10.0, 108.4, 18.0))  # our own work only, plus 0.4 s of daemons
    assert not quiet.disturbed and quiet.busy_processes == ()
    assert Disturbance.from_context({"busy": found.as_context()}) == found
    assert Disturbance.from_context({"loadavg_1m": 1.0}) is None  # figures from before the accounting


def test_a_real_competing_process_is_measured_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(busy, "MAX_NAMED", 100)  # other programs on a busy test machine may outrank the spinner
    core = busy.measured_cores()[0]
    with competitors(6, [core]) as spinners:
        found = busy.sample(1.0, cores=[core])
    assert found.disturbed and found.others_share > 0.3, found
    assert any(f"pid {spinners[0]}," in name for name in found.busy_processes), found.busy_processes
    warning = busy.busy_warning(found)
    assert warning and warning.startswith("the machine is busy") and f"pid {spinners[0]}" in warning


def test_a_living_child_of_ours_is_our_own_time_not_another_process() -> None:
    # A server kept running through a measurement (as bench/serving.py keeps llama-server) is a child that is
    # never reaped inside the window: the kernel's child usage does not count it yet, its own times do.
    core = busy.measured_cores()[0]
    child = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\n"
                              + SPIN.format(seconds=8)])
    try:
        time.sleep(0.5)  # the interpreter starts before the window opens
        found = busy.sample(1.5, cores=[core])
        assert child.poll() is None  # still running when the window closed
    finally:
        child.kill()
        child.wait()
    assert not any(f"pid {child.pid}," in name for name in found.busy_processes), found.busy_processes
    assert found.others_share < 0.5, found  # the spinning child took the whole core; it was ours


def test_a_measurement_taken_beside_a_busy_loop_is_marked(tmp_path: Path, model: Path) -> None:
    from autotune.measure.artifacts import prepare_artifact
    from autotune.measure.trial import measure

    backend = WindowedFake(measure_s=1.0, measures_here=True)
    source = backend.inspect(model)
    params = {"quant": "q4_0", "threads": 2}
    artifact, _ = prepare_artifact(backend, source, params)
    quiet = QuietWait(total_s=0)  # no time to wait: the figure is kept, marked
    with competitors(8, busy.measured_cores()):
        result = measure(backend, artifact, params, WORKLOAD, timeout_s=60, memory_limit_bytes=None, quiet=quiet)
    assert result.ok
    found = Disturbance.from_context(result.value.context)
    assert found is not None and found.disturbed and found.others_share > 0.3, found
    assert [d.busy_processes for d in quiet.disturbed] == [found.busy_processes]


def test_a_disturbed_measurement_is_measured_again_once_the_machine_is_quiet(model: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow, with the load scripted: busy window, a quiet sample, a quiet second window."""
    from autotune.measure import trial
    from autotune.measure.artifacts import prepare_artifact

    loud = Disturbance(window_s=1.0, cores=2, others_share=0.6, steal_share=0.0, busy_processes=("llama (pid 9, 99% of a core)",))
    calm = Disturbance(window_s=1.0, cores=2, others_share=0.01, steal_share=0.0)
    windows = iter([loud, calm])

    @contextmanager
    def scripted(cores: list[int] | None = None) -> Iterator[busy.Watch]:
        watch = busy.Watch([0, 1])
        yield watch
        watch.result = next(windows)

    monkeypatch.setattr(trial, "watching", scripted)
    monkeypatch.setattr(busy, "sample", lambda seconds=1.0, cores=None, sleep=None: calm)
    backend = WindowedFake(measures_here=True)
    source = backend.inspect(model)
    params = {"quant": "q8_0", "threads": 1}
    artifact, _ = prepare_artifact(backend, source, params)
    reporter = SilentReporter()
    quiet = QuietWait(total_s=10, reporter=reporter, sample_s=0.01)
    warnings = reporter.warnings
    result = trial.measure(backend, artifact, params, WORKLOAD, timeout_s=60, memory_limit_bytes=None, quiet=quiet)
    assert result.ok and Disturbance.from_context(result.value.context) == calm
    assert quiet.disturbed == [] and len(warnings) == 1
    assert "llama (pid 9" in warnings[0] and "waiting up to 10 s" in warnings[0]


def test_waiting_for_a_quiet_machine_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:

    loud = Disturbance(window_s=1.0, cores=2, others_share=0.6, steal_share=0.0)
    calls = []
    monkeypatch.setattr(busy, "sample", lambda seconds=1.0, cores=None, sleep=None: calls.append(seconds) or loud)
    monkeypatch.setattr(busy, "MAX_WAIT_PER_MEASUREMENT_S", 0.3)
    quiet = QuietWait(total_s=100, sample_s=0.05)
    started = time.monotonic()
    assert quiet.until_quiet() is None
    assert time.monotonic() - started < 1.0 and calls and quiet.remaining_s < 100


def test_nothing_fits_on_disturbed_figures_says_the_machine_was_busy() -> None:
    from autotune.budget import Budget
    from autotune.decide.judgment import nothing_fits_message
    from autotune.record import TrialRecord

    loud = Disturbance(window_s=3.0, cores=2, others_share=0.55, steal_share=0.0,
                       busy_processes=("llama-server (pid 42, 100% of a core)",))
    measurement = Measurement(load_s=0.1, ttft_ms=50, itl_p50_ms=2000, itl_p95_ms=2553, decode_tps=0.5,
                              prefill_tps=10, peak_rss_bytes=200 * 2**20, runs=1, spread=0.0,
                              context={"busy": loud.as_context()})
    record = TrialRecord(number=0, status="measured", backend="llamacpp", params={},
                         measurement=measurement.model_dump(), violations={"latency": 2500.0})
    message = nothing_fits_message([record], Budget.parse("2GB", "50ms"))
    assert "1 of 1 measurements were taken while the machine was busy (busy: llama-server)" in message
    assert "rerun when the machine is quiet" in message


def test_a_confirmation_verdict_on_disturbed_rounds_says_so() -> None:
    from autotune.budget import Budget
    from autotune.record import TrialRecord
    from autotune.search.confirm import Finalist, decide

    measurement = Measurement(load_s=0.1, ttft_ms=50, itl_p50_ms=10, itl_p95_ms=12, decode_tps=80, prefill_tps=500,
                              peak_rss_bytes=100 * 2**20, runs=1, spread=0.0)
    record = TrialRecord(number=3, status="measured", backend="fake", params={"quant": "q4_0", "threads": 2},
                         measurement=measurement.model_dump())
    artifact = Artifact(path=Path("x"), format="gguf", precision="q4_0", bits_per_weight=4.5, size_bytes=1)
    loud = Disturbance(window_s=1.0, cores=2, others_share=0.4, steal_share=0.0, busy_processes=("cc1plus (pid 5, 80% of a core)",))
    winner = Finalist("#3", "fake", record.params, artifact, record, decode_tps=[80, 81, 79, 80, 82],
                      itl_p95_ms=[12] * 5, disturbed=[loud])
    _, confirmation, notes = decide([winner], winner, Budget.parse("1GB", "50ms"), False, 5)
    assert notes[0].startswith("1 of 5 confirmation rounds were taken while the machine was busy (busy: cc1plus)")
    assert confirmation.notes == notes


WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_busy import WindowedFake, WORKLOAD
from autotune.measure.artifacts import prepare_artifact
from autotune.measure.trial import measure
backend = WindowedFake(measure_s=0.4, measures_here=True)
source = backend.inspect(Path(sys.argv[2]))
windows = []
for threads in (1, 2, 3):
    params = {"quant": "q4_0", "threads": threads}
    artifact, _ = prepare_artifact(backend, source, params)
    result = measure(backend, artifact, params, WORKLOAD, timeout_s=60, memory_limit_bytes=None)
    assert result.ok, result.error
    windows.append(result.value.context["window"])
print(json.dumps(windows))
"""


def test_workers_on_one_host_never_measure_at_the_same_time(model: Path) -> None:
    here = str(Path(__file__).parent)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, here, str(model)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    windows = sorted(window for out, _ in outputs for window in json.loads(out.strip().splitlines()[-1]))
    assert len(windows) == 9
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start >= end, f"two measurements overlapped: {windows}"


HOLDER = """
import sys, time
from pathlib import Path
from autotune.measure.busy import host_measurement_lock
with host_measurement_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_worker_killed_while_measuring_does_not_block_the_host(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def take() -> None:
            with host_measurement_lock(tmp_path):
                acquired.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not acquired.wait(0.5)  # the holder measures: the others wait
        os.kill(holder.pid, signal.SIGKILL)
        assert acquired.wait(5), "the lock of a worker killed with kill -9 was not released"
    finally:
        holder.kill()
        holder.wait()


def test_quality_scoring_waits_for_the_host_lock_too(tmp_path: Path, model: Path) -> None:
    """Scoring keeps the cores busy for seconds: it takes the host's lock like a measurement does."""
    from autotune.measure.artifacts import prepare_artifact
    from autotune.measure.quality_eval import QualityEvaluator
    from autotune.options import TuneOptions
    from autotune.reporting import SilentReporter
    from autotune.search.sources import ResolvedBackend
    from autotune.testing.conformance import example_hardware

    backend = WindowedFake(measures_here=True)
    resolved = ResolvedBackend(backend, backend.inspect(model), [])
    evaluator = QualityEvaluator.create([resolved], "gguf", example_hardware(), WORKLOAD,
                                        TuneOptions(eval_tokens=64, timeout_s=60), SilentReporter())
    assert evaluator is not None
    artifact, _ = prepare_artifact(backend, resolved.source, {"quant": "q4_0", "threads": 1})
    lock_folder = Path(os.environ["AUTOTUNE_CACHE"]) / "locks"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        scored: list[tuple[object, float]] = []
        params = {"quant": "q4_0", "threads": 1}
        scorer = threading.Thread(
            target=lambda: scored.append((evaluator.evaluate(resolved, artifact, params), time.monotonic())), daemon=True)
        scorer.start()
        scorer.join(8.0)  # unlocked, this scoring takes about 3 s here
        assert not scored, "scoring ran while another tuner on this host held the measurement lock"
        released = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        scorer.join(120)
        assert scored and scored[0][0] is not None and scored[0][1] > released
    finally:
        holder.kill()
        holder.wait()



def test_a_disturbed_measurement_is_not_kept_in_the_store() -> None:
    """It stays in its run's study, marked; a later run (any budget) measures that configuration again."""
    from autotune.store.measurements import storable

    measurement = Measurement(load_s=0.1, ttft_ms=50, itl_p50_ms=10, itl_p95_ms=12, decode_tps=80, prefill_tps=500,
                              peak_rss_bytes=100 * 2**20, runs=1, spread=0.0)
    loud = Disturbance(window_s=2.0, cores=2, others_share=0.5, steal_share=0.0)
    calm = Disturbance(window_s=2.0, cores=2, others_share=0.01, steal_share=0.0)
    record = {"status": "measured", "measurement": measurement.model_dump(mode="json")}
    assert storable(record)  # figures from before the accounting
    record["measurement"]["context"] = {"busy": calm.as_context()}
    assert storable(record)
    record["measurement"]["context"] = {"busy": loud.as_context()}
    assert not storable(record)


def test_a_run_stopped_by_its_checks_says_only_why_even_on_a_busy_machine(model: Path, capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The busy warning comes after the checks that can stop a run: a bad --storage is one line, busy or not."""
    from autotune.cli.main import main
    from autotune.testing import manager_with

    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager",
                        lambda **_: manager_with(FakeBackend(measures_here=True), builtins=True))
    with competitors(10, busy.measured_cores()):
        status = main(["run", "--model", str(model), "--budget", "1GB", "--latency", "50ms",
                       "--storage", "postgresql+nosuchdriver://u:secret@localhost:1/x"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "busy" not in err, err


# The synthetic competing load the confirmation measures under (autotune.measure.competing_load).

def _loops() -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process().children() if "-S" in p.cmdline()]


def test_a_load_plan_keeps_the_last_cores_busy_whole_cores_first() -> None:
    from autotune.measure.competing_load import plan_load

    assert plan_load(1.0, [0, 1]).duties == ((1, 1.0),)
    assert plan_load(0.5, [0, 1]).duties == ((1, 0.5),)
    assert plan_load(1.5, [0, 1, 2]).duties == ((1, 0.5), (2, 1.0))
    assert plan_load(1.5, [0, 1, 2]).describe() == "1.5 cores busy (cores 1, 2)"
    for share in (0.0, -1.0, float("nan"), 3.0):
        with pytest.raises(ValueError, match="competing load"):
            plan_load(share, [0, 1])


def test_the_synthetic_load_keeps_its_core_busy_and_counts_as_our_own() -> None:
    # A stranger on the core would be "others" (a disturbed figure, a wait for quiet); the load autotune starts
    # on purpose is its own time. Checked on the accounting itself, so that other work on a busy test machine
    # (which may leave the loop little of its core) cannot decide the test.
    import psutil

    from autotune.measure.competing_load import competing_load

    core = busy.measured_cores()[-1]
    with competing_load(1.0, max_s=30, cores=[core]) as plan:
        time.sleep(0.3)  # the interpreter starts before the window opens
        loops = [psutil.Process(pid) for pid in _loops()]
        assert [p.cpu_affinity() for p in loops] == [[core]] and plan.share == 1.0
        before = busy.snapshot([core])  # the loop's own reading lies inside the snapshots' window
        spent = sum(p.cpu_times().user + p.cpu_times().system for p in loops)
        time.sleep(1.0)
        spent = sum(p.cpu_times().user + p.cpu_times().system for p in loops) - spent
        after = busy.snapshot([core])
    assert spent > 0.05, "the loop ran"
    assert after.own_s - before.own_s >= spent - 0.02, "the loop's CPU time is autotune's own"
    assert loops[0].pid not in after.processes, "and it is not listed among the other processes"
    found = busy.disturbance(before, after)
    assert not any(f"pid {loops[0].pid}," in name for name in found.busy_processes), found.busy_processes
    assert _loops() == [] and not psutil.pid_exists(loops[0].pid), "stopped and reaped when the block ended"


def test_the_load_is_stopped_when_the_block_raises() -> None:
    from autotune.measure.competing_load import competing_load

    with pytest.raises(KeyboardInterrupt), competing_load(0.5, max_s=30):
        assert len(_loops()) == 1
        raise KeyboardInterrupt  # Ctrl-C during a busy measurement
    assert _loops() == []


def test_a_load_whose_parent_is_killed_ends_by_itself() -> None:
    # SIGKILL runs no finally: the loop sees it has another parent and ends within a period.
    import psutil

    script = ("import sys, time\nfrom autotune.measure.competing_load import competing_load\n"
              "with competing_load(1.0, max_s=60):\n"
              "    import psutil; print(psutil.Process().children()[0].pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    loop = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(loop).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(loop, signal.SIGKILL)
        raise AssertionError("the load outlived the process that started it")


def test_a_busy_share_beyond_the_cores_or_a_load_option_without_a_load_is_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from autotune.cli.main import main

    cores = len(busy.measured_cores())
    for argv, expected in ((["--busy-share", str(cores + 1)], f"from 0 to {cores}"),
                           (["--busy-share", "nan"], f"from 0 to {cores}"),
                           (["--under-load", "--busy-share", "0"], "--under-load measures the finalists")):
        status = main(["run", "--budget", "2GB", "--latency", "50ms", *argv])
        lines = capsys.readouterr().err.splitlines()
        assert status == 2 and len(lines) == 1 and expected in lines[0], lines
