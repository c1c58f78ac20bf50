"""The engine on the deterministic fake backend: constraints, pruning, resume, crashes, objectives."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.errors import NothingFits
from autotune.search.queue import mark_abandoned
from autotune.search.study import open_study
from autotune.store.measurements import MeasurementStore
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.workload import Workload

MiB = 2**20
WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=3, depth=0)


def tune(model: Path, backend: FakeBackend, budget: Budget, reporter: SilentReporter | None = None, **options) -> object:
    defaults = dict(trials=6, timeout_s=30, measure_quality=False, confirm_rounds=0, seed=1)
    defaults.update(options)
    return Tuner(model, budget, WORKLOAD, TuneOptions(**defaults), manager=manager_with(backend, builtins=True),
                 hardware=example_hardware(cores=4), reporter=reporter or SilentReporter()).run()


def test_winner_meets_the_budgets_and_profile_is_complete(model: Path) -> None:
    budget = Budget.parse("300MB", "30ms")
    result = tune(model, FakeBackend(), budget)
    profile = result.profile
    assert profile.measured.peak_rss_bytes <= budget.memory_bytes
    assert profile.measured.worst_itl_p95_ms <= budget.latency_ms
    assert profile.backend.name == "fake" and "json" in profile.exports
    assert profile.quality is not None and profile.quality.method == "bits-per-weight proxy"
    assert "proxy" in profile.objective
    # Proxy objective: the highest bits per weight among feasible configurations wins.
    feasible = [r for r in result.records if r.feasible]
    assert profile.artifact.bits_per_weight == max(r.bits_per_weight for r in feasible)


def test_predicted_infeasible_configurations_are_recorded_not_run(model: Path) -> None:
    # f16 needs 100M × 2 bytes = 191 MiB of weights: over a 150 MB budget, so never measured.
    reporter = SilentReporter()
    result = tune(model, FakeBackend(), Budget.parse("150MB", "40ms"), reporter, trials=5)
    skipped = [r for r in result.records if r.status == "predicted-infeasible"]
    assert skipped and all(r.params["quant"] == "f16" and r.measurement is None for r in skipped)
    assert "not run" in skipped[0].reason
    assert result.profile.params["quant"] != "f16"


def test_nothing_fits_explains_by_how_much(model: Path) -> None:
    with pytest.raises(NothingFits) as error:
        tune(model, FakeBackend(), Budget.parse("100MB", "1ms"), trials=3)
    message = str(error.value)
    assert "No configuration met the budget" in message and "× the" in message and "--budget" in message


def test_rerun_resumes_without_remeasuring(model: Path) -> None:
    budget = Budget.parse("300MB", "30ms")
    first = tune(model, FakeBackend(), budget, trials=3)
    reporter = SilentReporter()
    second = tune(model, FakeBackend(), budget, reporter, trials=2)
    assert first.study_name == second.study_name
    assert any("resuming" in m and "3 finished" in m for m in reporter.messages)
    measured = [r for r in second.records if r.status == "measured"]
    assert len(measured) == 5
    assert len({r.key for r in measured}) == 5, "a configuration was measured twice"


def test_interrupted_run_keeps_finished_trials(model: Path) -> None:
    class Interrupting(SilentReporter):
        def trial(self, index, total, record, best):
            super().trial(index, total, record, best)
            if index == 2:
                raise KeyboardInterrupt

    budget = Budget.parse("300MB", "30ms")
    with pytest.raises(KeyboardInterrupt):
        tune(model, FakeBackend(), budget, Interrupting(), trials=4)
    reporter = SilentReporter()
    result = tune(model, FakeBackend(), budget, reporter, trials=1)
    assert any("2 finished" in m for m in reporter.messages)
    assert len([r for r in result.records if r.status == "measured"]) == 3


def test_a_killed_run_leaves_no_running_trial_behind(model: Path, cache: Path) -> None:
    study = open_study("killed", None, 0)
    trial = study.ask()
    trial.set_user_attr("owner", {"host": __import__("socket").gethostname(), "pid": 2**22 + 12345})
    live = study.ask()
    live.set_user_attr("owner", {"host": __import__("socket").gethostname(), "pid": os.getpid()})
    assert mark_abandoned(study, MeasurementStore().alive) == 1
    assert study.trials[0].state == TrialState.FAIL and study.trials[1].state == TrialState.RUNNING


class CrashesAndHangs(FakeBackend):
    """Starts with a configuration that works, then one that crashes and one that hangs (so both are tried)."""

    def starting_points(self, source, hardware, workload):
        return [{"quant": quant, "threads": self.max_threads} for quant in ("f16", "q8_0", "q5_1")]


def test_worker_crash_and_hang_become_failed_trials(model: Path) -> None:
    backend = CrashesAndHangs(crash_on={"quant": "q8_0"}, hang_on={"quant": "q5_1"})
    # A generous timeout: a worker on a loaded 2-core machine may need seconds to start; the hang still ends.
    result = tune(model, backend, Budget.parse("300MB", "30ms"), trials=4, timeout_s=15)
    failed = {r.params["quant"]: r.reason or "" for r in result.records if r.status == "failed"}
    assert set(failed) == {"q8_0", "q5_1"}, "the crashing and the hanging configuration were both tried"
    assert "SIGABRT" in failed["q8_0"]
    assert "timed out" in failed["q5_1"]
    assert result.profile.params["quant"] not in ("q8_0", "q5_1")


def test_a_run_leaves_the_callers_optuna_logging_level_alone(model: Path) -> None:
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        tune(model, FakeBackend(), Budget.parse("300MB", "30ms"), trials=1)
        open_study("logging", None, 0)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


@pytest.mark.parametrize("objective, expected", [("latency", "q4_0"), ("memory", "q4_0"), ("quality", "f16")])
def test_objective_picks_the_expected_winner(model: Path, objective: str, expected: str) -> None:
    # With quality measured on the fake backend, f16 (the source) has zero loss; q4_0 is fastest and smallest.
    result = tune(model, FakeBackend(), Budget.parse("400MB", "40ms"), trials=8, objective=objective,
                  measure_quality=True)
    assert result.profile.params["quant"] == expected
    if objective == "quality":
        assert result.profile.quality.method == "kl-divergence"
        assert result.profile.quality.kl_divergence.value == pytest.approx(0.0, abs=1e-9)


def test_a_lossy_configuration_is_scored_not_measured_in_full_once_the_source_fits(model: Path) -> None:
    # The source (f16, no loss) is measured first; under the quality objective nothing with a loss above zero can
    # beat it, so faster quantizations are screened and scored, and never measured in full. Under the latency
    # objective quality does not decide, and they are measured in full.
    budget = Budget.parse("400MB", "40ms")
    quality = tune(model, FakeBackend(), budget, trials=8, objective="quality", measure_quality=True)
    lossy = [r for r in quality.records if r.params["quant"] != "f16" and r.quality is not None]
    assert lossy and all(r.status == "screened-out" and (r.reason or "").startswith("scored out: KL") for r in lossy)
    assert all(r.quality.kl_divergence.low > 0 and r.measurement.runs == 1 for r in lossy)  # the screen's figures
    assert quality.profile.params["quant"] == "f16"
    latency = tune(model, FakeBackend(), budget, trials=8, objective="latency", measure_quality=True)
    assert any(r.params["quant"] != "f16" and r.status == "measured" for r in latency.records)
    assert not any((r.reason or "").startswith("scored out") for r in latency.records)


class CannotRunThisModel(FakeBackend):
    """A backend whose converter refuses the model's architecture."""

    def prepare(self, source, params, workdir):
        from autotune.errors import BackendUnavailable

        raise BackendUnavailable("the converter does not know this architecture")


def test_a_backend_that_cannot_run_the_model_is_tried_once(model: Path) -> None:
    manager = manager_with(CannotRunThisModel(name="broken"), FakeBackend())
    reporter = SilentReporter()
    result = Tuner(model, Budget.parse("300MB", "30ms"), WORKLOAD,
                   TuneOptions(trials=5, timeout_s=30, measure_quality=False, confirm_rounds=0, seed=1),
                   manager=manager, hardware=example_hardware(cores=4), reporter=reporter).run()
    assert len([r for r in result.records if r.backend == "broken"]) == 1
    assert any("dropped" in w for w in reporter.warnings)
    assert result.profile.backend.name == "fake"
    assert len([r for r in result.records if r.status == "measured"]) == 5


def test_the_budget_is_decided_once_when_the_run_is_made(model: Path) -> None:
    import dataclasses

    hardware, reporter = example_hardware(memory_gib=4), SilentReporter()
    tuner = Tuner(model, Budget.parse("100GB", "30ms"), WORKLOAD, TuneOptions(trials=1), reporter=reporter,
                  manager=manager_with(FakeBackend(), builtins=True), hardware=hardware)
    capped = tuner.context.budget
    assert capped.memory_bytes == hardware.memory.limit_bytes
    tuner.preflight()
    tuner.preflight()
    assert tuner.context.budget is capped and sum("above the" in w for w in reporter.warnings) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuner.context.budget = Budget.parse("1GB", "30ms")  # type: ignore[misc]
