"""Runs right on the machine it meets: self-tests in real workers, crash-aware search, foreign hardware refused."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.cli.main import main
from autotune.errors import ForeignHardware, NothingFits
from autotune.hardware import Hardware
from autotune.measure.selftest import explain_signal, run_self_test, usable
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params
from autotune.probe.machine import probe_here
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.workload import Workload

WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=3, depth=0)
FIXTURES = Path(__file__).parent / "fixtures" / "hardware"


class LocalBackend(FakeBackend):
    """The fake backend posing as a real runtime: it measures this machine, so it is self-tested."""

    measures_this_machine: ClassVar[bool] = True

    def self_test(self, workdir: Path) -> str | None:
        return "ran a tiny model"


class IllegalInstructionRuntime(LocalBackend):
    """A runtime whose worker dies by a real SIGILL in its self-test, as llama.cpp's AMX build did."""

    def self_test(self, workdir: Path) -> str | None:
        os.kill(os.getpid(), signal.SIGILL)
        return None

    def crash_advice(self, signal_name: str) -> str:
        return "rebuild the runtime without AMX"


class CrashesWhenMeasuring(LocalBackend):
    """Passes its self-test, then its workers die by ``crash_signal`` for every quantization but ``spare``."""

    def __init__(self, crash_signal: signal.Signals, spare: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash_signal = crash_signal
        self.spare = spare

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        if params["quant"] != self.spare:
            os.kill(os.getpid(), self.crash_signal)
        return super().measure(artifact, params, workload)


@pytest.fixture(scope="module")
def here() -> Hardware:
    return probe_here(measure_bandwidth=False)


def tune(model: Path, hardware: Hardware, *backends: FakeBackend, reporter: SilentReporter | None = None,
         budget: str = "300MB", **options: Any) -> Any:
    settings: dict[str, Any] = dict(trials=6, timeout_s=60, measure_quality=False, confirm_rounds=0, seed=1)
    settings.update(options)
    return Tuner(model, Budget.parse(budget, "40ms"), WORKLOAD, TuneOptions(**settings),
                 manager=manager_with(*backends, builtins=True), hardware=hardware,
                 reporter=reporter or SilentReporter()).run()


def test_a_runtime_that_dies_by_sigill_is_unavailable_with_the_meaning_and_the_remedy(here: Hardware) -> None:
    backend = IllegalInstructionRuntime(name="amxbuild")
    result = run_self_test(backend, here)
    assert result.passed is False and result.signal == "SIGILL" and not result.cached
    assert "illegal instruction" in result.summary and "rebuild the runtime without AMX" in result.summary
    availability, _ = usable(backend, here)
    assert not availability.available and "SIGILL" in availability.reason
    assert run_self_test(backend, here).cached  # once per runtime build and machine


def test_a_passing_self_test_is_cached_and_refresh_runs_it_again(here: Hardware) -> None:
    backend = LocalBackend(name="fine")
    first = run_self_test(backend, here)
    assert first.passed is True and first.summary == "ran a tiny model" and first.seconds > 0
    assert run_self_test(backend, here).cached
    assert not run_self_test(backend, here, refresh=True).cached


def test_backends_without_a_self_test_stay_import_only(here: Hardware) -> None:
    result = run_self_test(FakeBackend(), here)
    assert result.passed is None and usable(FakeBackend(), here)[0].available


def test_sigill_explanation_names_the_amx_of_the_captured_xeon() -> None:
    xeon = Hardware.model_validate(json.loads((FIXTURES / "xeon-2c-amx-kvm" / "autotune_probe.json").read_text()))
    assert "amx_tile" in explain_signal("SIGILL", xeon) and "AMX kernels" in explain_signal("SIGILL", xeon)
    assert "AMX" not in explain_signal("SIGILL", example_hardware())


def test_autotune_plugins_shows_the_crash_and_check_fails(here: Hardware, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    manager = manager_with(IllegalInstructionRuntime(name="amxbuild"), LocalBackend(name="fine"), builtins=True)
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager", lambda **_: manager)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "backend amxbuild: UNAVAILABLE" in out and "SIGILL" in out and "illegal instruction" in out
    assert "backend fine: available (1.0); self-test passed: ran a tiny model" in out
    assert main(["plugins", "--check"]) == 1
    assert "self-test of amxbuild failed" in capsys.readouterr().err
    assert main(["plugins", "--json"]) == 0
    rows = {b["name"]: b for p in json.loads(capsys.readouterr().out)["plugins"] for b in p["backends"]}
    assert rows["amxbuild"]["self_test"]["signal"] == "SIGILL" and rows["fine"]["self_test"]["passed"] is True


def test_a_crashing_runtime_is_not_tuned(model: Path, here: Hardware) -> None:
    reporter = SilentReporter()
    result = tune(model, here, IllegalInstructionRuntime(name="amxbuild"), LocalBackend(name="fine"), reporter=reporter)
    assert {r.backend for r in result.records} == {"fine"}
    assert any("amxbuild" in w and "SIGILL" in w for w in reporter.warnings)


def test_a_backend_dying_by_a_signal_in_its_first_configuration_is_dropped_within_one_trial(model: Path,
                                                                                          here: Hardware) -> None:
    reporter = SilentReporter()
    crashing = CrashesWhenMeasuring(signal.SIGILL, name="crashy")
    result = tune(model, here, crashing, LocalBackend(name="fine"), reporter=reporter)
    crashed = [r for r in result.records if r.backend == "crashy" and r.status == "failed"]
    assert len(crashed) == 1 and crashed[0].cause == "killed by SIGILL"
    assert "crashy" in result.profile.study["dropped_backends"]
    assert sum("dropped" in w and "SIGILL" in w and "first configuration" in w for w in reporter.warnings) == 1
    assert result.profile.backend.name == "fine"


def test_the_same_signal_in_two_configurations_drops_a_backend_that_once_worked(model: Path, here: Hardware) -> None:
    reporter = SilentReporter()
    # f16 (the starting point) measures; every other quantization dies by SIGSEGV.
    result = tune(model, here, CrashesWhenMeasuring(signal.SIGSEGV, spare="f16", name="flaky"), reporter=reporter,
                  trials=8)
    crashed = [r for r in result.records if r.status == "failed"]
    assert len(crashed) == 2 and all(r.cause == "killed by SIGSEGV" for r in crashed)
    assert any("in 2 configurations" in w for w in reporter.warnings)
    assert result.profile.params["quant"] == "f16"


def test_nothing_fits_leads_with_the_real_cause(model: Path, here: Hardware) -> None:
    with pytest.raises(NothingFits) as caught:
        tune(model, here, CrashesWhenMeasuring(signal.SIGILL, name="crashy"))
    message = str(caught.value)
    assert message.index("Backend crashy was dropped") < message.index("SIGILL")
    assert "illegal instruction" in message


def test_memory_and_latency_skips_are_reported_apart(model: Path) -> None:
    class Slow(FakeBackend):
        def predict(self, source: Any, params: Params, workload: Workload, hardware: Hardware) -> Any:
            prediction = super().predict(source, params, workload, hardware)
            return type(prediction)(memory_bytes=prediction.memory_bytes, latency_lower_bound_ms=500.0)

    # f16 is over the memory budget; everything else is predicted too slow for 40 ms.
    with pytest.raises(NothingFits) as caught:
        tune(model, example_hardware(), Slow(), budget="150MB", trials=4)
    message = str(caught.value)
    assert "skipped unmeasured for memory" in message and "--budget" in message
    assert "skipped unmeasured for latency: predicted at least 500.0 ms" in message and "--latency 550ms" in message


def test_measuring_under_another_machines_description_is_refused(model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    foreign = example_hardware(cores=16, memory_gib=128)
    with pytest.raises(ForeignHardware, match="another machine"):
        tune(model, foreign, LocalBackend(name="real"))
    # Simulated backends (replay tables, fakes) may plan under any description.
    assert tune(model, foreign, FakeBackend()).profile.backend.name == "fake"

    described = tmp_path / "h200.json"
    described.write_text(foreign.model_dump_json())
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(described))
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager",
                        lambda **_: manager_with(LocalBackend(name="real"), builtins=True))
    status = main(["run", "--model", str(model), "--budget", "2GB", "--latency", "50ms"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "AUTOTUNE_HARDWARE_JSON describes another machine" in err and "unset AUTOTUNE_HARDWARE_JSON" in err


def test_a_budget_above_the_machine_is_capped_at_its_limit(model: Path) -> None:
    reporter = SilentReporter()
    small = example_hardware(memory_gib=1)
    result = tune(model, small, FakeBackend(), reporter=reporter, budget="2GB")
    assert result.profile.budget.memory_bytes == small.memory.limit_bytes
    assert any("above the 1 GiB this machine lets autotune use" in w for w in reporter.warnings)
