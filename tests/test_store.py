"""The measurement store: reuse across budgets and objectives, stale runtimes, machines kept apart, claims."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotune import SilentReporter
from autotune.errors import NothingFits
from autotune.record import TrialRecord
from autotune.search.study import open_study
from autotune.search.trials import RECORD_ATTR
from autotune.store.measurements import MeasurementStore, Scope, storable
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import InlineBackends
from autotune.testing.tuning import tune_with_plugins


def test_a_relaxed_budget_after_nothing_fits_answers_from_the_store_without_measuring(model: Path) -> None:
    with pytest.raises(NothingFits):
        tune_with_plugins(model, InlineBackends(FakeBackend()), budget="300MB", latency="5ms", trials=6)
    again = SilentReporter()
    result = tune_with_plugins(model, InlineBackends(FakeBackend()), reporter=again, budget="300MB", latency="40ms",
                               trials=6)
    assert result.new_measurements == 0 and not again.trials
    assert any("6 configuration(s) measured for other budgets" in m for m in again.messages)
    assert result.profile.measured.worst_itl_p95_ms <= 40


def test_another_objective_reuses_every_measurement_and_says_so_in_the_dashboard_attributes(model: Path) -> None:
    # Screening off: a screened-out outcome depends on that run's best, so it is not stored (see store.storable).
    first = tune_with_plugins(model, InlineBackends(FakeBackend()), trials=4, objective="latency", screening=False)
    second = tune_with_plugins(model, InlineBackends(FakeBackend()), trials=4, objective="memory", screening=False)
    assert first.study_name != second.study_name
    assert second.new_measurements == 0
    study = open_study(second.study_name, None, 0)
    seeded = [t for t in study.trials if "from_store" in t.user_attrs]
    assert len(seeded) == 4 and all(t.user_attrs["from_store"].startswith("measured on ") for t in seeded)


def test_more_trials_than_stored_measures_only_the_difference(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend()), trials=3, patience=0, objective="latency")
    more = tune_with_plugins(model, InlineBackends(FakeBackend()), trials=5, patience=0, objective="memory")
    assert more.new_measurements == 2
    measured = [r for r in more.records if r.status == "measured"]
    assert len(measured) == len({r.key for r in measured}) == 5


def test_a_runtime_upgrade_makes_stored_figures_stale_never_mixed(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend(version="1.0")), trials=3, patience=0)
    reporter = SilentReporter()
    upgraded = tune_with_plugins(model, InlineBackends(FakeBackend(version="2.0")), reporter=reporter, trials=3,
                                 patience=0, objective="memory")
    assert upgraded.new_measurements == 3
    assert any("3 stored measurement(s) of fake 1.0 are stale (installed now: 2.0)" in w for w in reporter.warnings)
    assert not any("from_store" in t.user_attrs for t in open_study(upgraded.study_name, None, 0).trials)


def test_another_machine_never_lends_its_figures(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend()), trials=3, hardware=example_hardware(cores=4))
    other = tune_with_plugins(model, InlineBackends(FakeBackend()), trials=3, hardware=example_hardware(cores=8))
    assert other.new_measurements == 3


def test_budget_dependent_outcomes_are_not_stored() -> None:
    assert storable({"status": "measured"})
    assert storable({"status": "failed", "cause": "killed by SIGILL"})
    assert storable({"status": "failed", "cause": "prepare failed"})
    for outcome in ({"status": "predicted-infeasible", "cause": "memory"}, {"status": "screened-out"},
                    {"status": "failed", "cause": "killed by SIGKILL"}, {"status": "failed", "cause": "timed out"},
                    {"status": "failed", "cause": "killed by the memory guard"}):
        assert not storable(outcome), outcome


def test_a_claim_is_exclusive_and_a_dead_workers_claim_is_taken_over() -> None:
    store = MeasurementStore()
    assert store.claim("config-a", "scope")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}"
    other = MeasurementStore()
    other.worker = holder  # as if a process now gone had claimed config-b
    assert other.claim("config-b", "scope")
    assert store.claim("config-b", "scope"), "the claim of a process that no longer exists must be taken over"
    assert not other.claim("config-a", "scope")
    assert store.others_measuring("scope") == 0
    store.release("config-a")
    assert MeasurementStore().claim("config-a", "scope")


def test_a_claim_of_another_host_lapses_when_its_heartbeat_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    import autotune.store.measurements as store_module

    far = MeasurementStore()
    far.worker = "far-away-host:123"
    far._write_heartbeat()
    assert far.claim("config", "scope")
    near = MeasurementStore()
    assert near.alive("far-away-host:123") and not near.claim("config", "scope")
    monkeypatch.setattr(store_module, "STALE_AFTER_S", 0.0)
    time.sleep(0.01)
    assert not near.alive("far-away-host:123") and near.claim("config", "scope")


def test_stored_records_of_one_scope_stay_apart_from_another_workload() -> None:
    store = MeasurementStore()
    a = Scope("sha", "m", "fp", {"workload": 1})
    b = Scope("sha", "m", "fp", {"workload": 2})
    store.put(a, "fake", "1.0", "cfg", {"status": "measured", "n": 1})
    store.put(a, "fake", "1.0", "cfg", {"status": "measured", "n": 2})  # re-measured: replaces
    assert [r.record["n"] for r in store.records(a, {"fake": "1.0"})] == [2]
    assert store.records(b, {"fake": "1.0"}) == []
    assert [r.stale for r in store.records(a, {"fake": "2.0"})] == [True]


WORKER = """
import json, sys
from pathlib import Path
from autotune.testing import FakeBackend
from autotune.testing.inline_plugin import InlineBackends
from autotune.testing.tuning import tune_with_plugins
result = tune_with_plugins(Path(sys.argv[1]), InlineBackends(FakeBackend(measure_s=float(sys.argv[3]))),
                           storage=sys.argv[2], trials=int(sys.argv[4]), patience=0, objective="latency")
print(json.dumps({"study": result.study_name, "new": result.new_measurements,
                  "winner": result.winner.key, "evidence": len(result.records), "profile": result.profile.to_json()}))
"""


def start_worker(model: Path, url: str, measure_s: float, trials: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(model), url, str(measure_s), str(trials)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tried_keys(study_name: str, url: str) -> list[str]:
    """The configuration of every trial of the study that ran (measured, screened, skipped on a prediction)."""
    study = open_study(study_name, url, 0)
    return [TrialRecord.from_json(t.user_attrs[RECORD_ATTR]).key for t in study.trials
            if RECORD_ATTR in t.user_attrs and "from_store" not in t.user_attrs]


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh shared storage: a database on a real PostgreSQL server, or a SQLite file several processes open."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def test_four_workers_on_a_fresh_database_share_one_search(model: Path, shared_url: str) -> None:
    import json

    workers = [start_worker(model, shared_url, 0.3, 16) for _ in range(4)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0 and "Traceback" not in err, err[-2000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert len({r["study"] for r in results}) == 1
    keys = tried_keys(results[0]["study"], shared_url)
    assert len(keys) == len(set(keys)) == 16, "every configuration tried exactly once"
    assert sum(1 for r in results if r["new"] > 0) >= 2, "the work was shared"
    assert len({r["winner"] for r in results}) == 1 and len({r["evidence"] for r in results}) == 1
    password = shared_url.split(":")[2].split("@")[0] if "@" in shared_url else ""
    study = open_study(results[0]["study"], shared_url, 0)
    assert not password or password not in json.dumps(study.user_attrs) + json.dumps([t.user_attrs for t in study.trials])
    for result, (_, err) in zip(results, outputs, strict=True):
        if not password:
            break  # SQLite: no credentials
        assert password not in result["profile"] + err
        assert json.loads(result["profile"])["study"]["storage"] == shared_url.replace(password, "***")


def test_a_worker_killed_mid_trial_neither_loses_nor_blocks_the_search(model: Path, postgres_url: str) -> None:
    import json

    victim = start_worker(model, postgres_url, 30.0, 16)  # measures slowly: killed in its first trial
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _running_trials(postgres_url):
        time.sleep(0.2)
    assert _running_trials(postgres_url), "the first worker never started a trial"
    os.kill(victim.pid, 9)
    victim.communicate()
    survivor = start_worker(model, postgres_url, 0.0, 16)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    keys = tried_keys(result["study"], postgres_url)
    assert len(keys) == len(set(keys)) == 16, "the killed worker's configuration was tried by the survivor"


def _running_trials(url: str) -> int:
    import optuna

    summaries = optuna.get_all_study_summaries(url)
    return sum(len(optuna.load_study(study_name=s.study_name, storage=url).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))) for s in summaries)


def test_a_trial_another_worker_ended_keeps_its_record_in_a_trial_of_its_own() -> None:
    """SQLite has no row lock: two workers can pop one queued trial; the second to finish must not lose its record."""
    from optuna.trial import TrialState

    from autotune.search.trials import end_quietly, records, tell

    study = open_study("shared queue", None, 0)
    trial = study.ask()
    trial.suggest_categorical("backend", ["fake"])
    trial.suggest_categorical("fake.quant", ["f16", "q8_0"])
    end_quietly(study, trial, TrialState.PRUNED, repeat_of=-1)  # the other worker's view: a repeat
    end_quietly(study, trial, TrialState.PRUNED, repeat_of=-1)  # again: nothing to do, no error
    record = TrialRecord(number=trial.number, status="failed", backend="fake", params={"quant": "f16"},
                         reason="prepare failed: test", cause="prepare failed")
    tell(study, trial, record)
    (kept,) = records(study)
    assert kept.reason == "prepare failed: test" and kept.number != trial.number
    assert study.trials[kept.number].user_attrs["shared_queue_trial"] == trial.number
