"""An interrupted measurement is no result: kill -9, SIGTERM, Ctrl-C or a dead fleet worker mid-trial, and the
configuration in flight is measured by the next run, never counted in the study or the measurement store."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from autotune.search.trials import RECORD_ATTR
from autotune.store.storage import default_storage

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# `autotune run` itself (cli.main), with the fake backend as its only backend and a fixed machine description.
RUNNER = """
import sys
import autotune.cli.run as run
from autotune.testing import FakeBackend, manager_with
from autotune.testing.conformance import example_hardware

run.get_plugin_manager = lambda **_: manager_with(FakeBackend(measure_s=float(sys.argv[1])), builtins=True)
run.probe = lambda manager, **_: example_hardware()
from autotune.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
# The fake backend's starting point: the first configuration every run measures.
FIRST = {"backend": "fake", "fake.quant": "f16", "fake.threads": 4}


def autotune_run(tmp_path: Path, model: Path, measure_s: float, trials: int = 1,
                 storage: str | None = None) -> subprocess.Popen[bytes]:
    args = ["run", "--model", str(model), "--budget", "2GB", "--latency", "50ms", "--trials", str(trials),
            "--prompt-tokens", "8", "--gen-tokens", "4", "--context", "64", "--depth", "0", "--no-quality",
            "--confirm-rounds", "0", "--seed", "1", "--out", str(tmp_path / "profiles"),
            *(["--storage", storage] if storage else [])]
    # A session of its own, so that a Ctrl-C can go to its whole process group as a terminal sends it.
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(measure_s), *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def measuring(run: subprocess.Popen[bytes]) -> bool:
    """Whether ``run`` has a measurement worker running (it is mid-trial)."""
    try:
        return any("autotune.measure.worker" in " ".join(child.cmdline())
                   for child in psutil.Process(run.pid).children())
    except psutil.Error:
        return False


def trials(storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    storage = storage or default_storage()
    found = []
    for summary in optuna.get_all_study_summaries(storage):
        found += optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
    return found


def stored_records() -> list[dict[str, object]]:
    from autotune.store.measurements import MeasurementStore

    store = MeasurementStore(None)
    try:
        return [stored.record for stored in store.everything()]
    finally:
        store.close()


def interrupt(tmp_path: Path, model: Path, stop: Callable[[subprocess.Popen[bytes]], None]) -> tuple[int, str]:
    """Start a run whose first measurement takes a minute, stop it mid-measurement; its status and stderr."""
    run = autotune_run(tmp_path, model, measure_s=60)
    try:
        assert wait_for(lambda: measuring(run), 60), "the run never started measuring"
        stop(run)
        _, err = run.communicate(timeout=30)
        return run.returncode, err.decode()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def assert_measured_again(tmp_path: Path, model: Path) -> None:
    """The interrupted configuration left no result; the next run measures it first, as a result like any other."""
    before = [t for t in trials() if t.params == FIRST or t.system_attrs.get("fixed_params") == FIRST]
    assert before and all(t.state != TrialState.COMPLETE for t in before)
    assert not any(record.get("params") == {"quant": "f16", "threads": 4} for record in stored_records()), \
        "an interrupted measurement reached the measurement store"

    rerun = autotune_run(tmp_path, model, measure_s=0)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    profile = json.loads(next((tmp_path / "profiles").glob("*.json")).read_text())
    assert profile["study"]["failed"] == 0, "the interrupted trial was counted as a failed result"
    complete = [t for t in trials() if t.state == TrialState.COMPLETE]
    assert [t.params for t in complete] == [FIRST], "the configuration in flight was not measured again"
    assert [r["status"] for r in stored_records() if r.get("params") == {"quant": "f16", "threads": 4}] == ["measured"]


def test_kill_9_mid_trial_is_measured_again(tmp_path: Path, model: Path) -> None:
    status, _ = interrupt(tmp_path, model, lambda run: os.kill(run.pid, signal.SIGKILL))
    assert status == -signal.SIGKILL
    assert_measured_again(tmp_path, model)


def test_sigterm_mid_trial_ends_the_run_cleanly_and_is_measured_again(tmp_path: Path, model: Path) -> None:
    status, err = interrupt(tmp_path, model, lambda run: os.kill(run.pid, signal.SIGTERM))
    assert status == 128 + signal.SIGTERM and "interrupted" in err and "Traceback" not in err
    assert_measured_again(tmp_path, model)


def test_ctrl_c_mid_trial_is_measured_again(tmp_path: Path, model: Path) -> None:
    # A terminal's Ctrl-C reaches the whole foreground process group: the run and its measurement worker.
    status, err = interrupt(tmp_path, model, lambda run: os.killpg(run.pid, signal.SIGINT))
    assert status == 128 + signal.SIGINT and "interrupted" in err and "Traceback" not in err
    assert_measured_again(tmp_path, model)


def test_a_worker_stopped_alone_is_an_interruption_not_a_failed_configuration(tmp_path: Path, model: Path) -> None:
    # SIGTERM to the measurement worker only (a service manager stopping processes one by one): no "killed by
    # SIGTERM" failure is recorded, stored, or counted against the backend.
    def stop_worker(run: subprocess.Popen[bytes]) -> None:
        worker = next(c for c in psutil.Process(run.pid).children() if "autotune.measure.worker" in " ".join(c.cmdline()))
        worker.terminate()

    status, err = interrupt(tmp_path, model, stop_worker)
    assert status == 128 + signal.SIGINT and "Traceback" not in err
    assert_measured_again(tmp_path, model)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_storage(request: pytest.FixtureRequest) -> str | None:
    """The default SQLite file, or a fresh database on a throwaway PostgreSQL server (a fleet's storage)."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def test_a_dead_fleet_worker_s_configuration_is_measured_by_a_live_one(tmp_path: Path, model: Path,
                                                                       shared_storage: str | None) -> None:
    # Two workers share one study; the one measuring the first configuration dies while the other measures
    # something else: the live one measures the dead one's configuration.
    dead = autotune_run(tmp_path, model, measure_s=60, storage=shared_storage)
    live = None
    try:
        assert wait_for(lambda: measuring(dead), 60), "the first worker never started measuring"
        live = autotune_run(tmp_path, model, measure_s=3, trials=3, storage=shared_storage)
        assert wait_for(lambda: measuring(live), 60), "the second worker never started measuring"
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=30)
        _, err = live.communicate(timeout=180)
        assert live.returncode == 0, err.decode()
    finally:
        for run in (dead, live):
            if run is not None and run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    profile = json.loads(next((tmp_path / "profiles").glob("*.json")).read_text())
    assert profile["study"]["failed"] == 0
    first = [t.state for t in trials(shared_storage) if t.params == FIRST and RECORD_ATTR in t.user_attrs]
    assert first == [TrialState.COMPLETE]


def test_sigterm_stops_any_command_as_ctrl_c_does_and_restores_the_handler(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli = importlib.import_module("autotune.cli.main")  # the module: autotune.cli.main is also the function's name

    def terminated(args: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # a service manager stopping the command
        time.sleep(10)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "probe", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["probe"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "autotune: interrupted\n"  # not a run: no word about trials
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_worker_stopped_from_outside_interrupts_its_caller_instead_of_failing() -> None:
    # Every caller (measurements, self-tests, conversions, quality) would otherwise record "killed by SIGTERM" as a
    # result: a self-test interrupted so would have been cached as failed, the backend unavailable until --refresh.
    import threading

    from autotune.measure.worker import WorkerTask, run_in_worker

    def stop_the_worker() -> None:
        me = psutil.Process()
        assert wait_for(lambda: any("autotune.measure.worker" in " ".join(c.cmdline()) for c in me.children()), 30)
        next(c for c in me.children() if "autotune.measure.worker" in " ".join(c.cmdline())).terminate()

    stopper = threading.Thread(target=stop_the_worker)
    stopper.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            run_in_worker(WorkerTask(time.sleep, (60,)), timeout_s=120)
    finally:
        stopper.join()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_record_of_a_worker_stopped_from_outside_is_never_stored(signal_name: str) -> None:
    from autotune.store.measurements import storable

    assert not storable({"status": "failed", "cause": f"killed by {signal_name}"})
    assert storable({"status": "failed", "cause": "killed by SIGILL"})  # a crash of the runtime itself is kept
