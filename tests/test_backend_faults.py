"""A backend that breaks the contract at its edges costs its own figures or trial, never the run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from optuna.trial import TrialState

from autotune.measure.selftest import _cache_path, crash_message
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params, runtime_version
from autotune.search.study import open_study
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import InlineBackends
from autotune.testing.tuning import tune_with_plugins
from autotune.workload import Workload


class BrokenVersion(FakeBackend):
    """A backend whose version check raises (a runtime that cannot say what it is)."""

    name = "broken-version"

    def version(self) -> str:
        raise RuntimeError("no version here")


class WrongType(FakeBackend):
    """A backend whose ``measure`` returns something that looks like a Measurement for one quantization."""

    name = "wrong-type"

    def starting_points(self, source: Any, hardware: Any, workload: Any) -> list[Params]:
        return [{"quant": "f16", "threads": 2}, {"quant": "q8_0", "threads": 2}]

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        if params["quant"] == "q8_0":  # has what the worker fills in, but is no Measurement
            return SimpleNamespace(peak_rss_bytes=1, context={})  # type: ignore[return-value]
        return super().measure(artifact, params, workload)


def test_a_raising_version_check_costs_no_trial(model: Path) -> None:
    result = tune_with_plugins(model, InlineBackends(BrokenVersion()), backends=["broken-version"], trials=3)
    assert [r.status for r in result.records if r.spent] == ["measured"] * 3
    assert result.profile.backend.version == "unknown (version check raised RuntimeError)"


def test_a_raising_version_check_still_explains_a_crash_and_keys_the_self_test() -> None:
    backend, hardware = BrokenVersion(), example_hardware()
    assert runtime_version(backend) == "unknown (version check raised RuntimeError)"
    assert "broken-version (version unknown (version check raised RuntimeError)) died by SIGILL" in \
        crash_message(backend, "SIGILL", hardware, "in its first configuration")
    assert _cache_path(backend, hardware).name.startswith("broken-version-")


def test_a_measurement_of_the_wrong_type_fails_its_trial_only(model: Path) -> None:
    result = tune_with_plugins(model, InlineBackends(WrongType()), backends=["wrong-type"], trials=3)
    wrong = next(r for r in result.records if r.params["quant"] == "q8_0")
    assert wrong.status == "failed"
    assert "backend 'wrong-type' returned SimpleNamespace, not a Measurement" in (wrong.reason or "")
    assert result.profile.params["quant"] != "q8_0"
    study = open_study(result.study_name, None, 0)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
