"""Every value a plugin returns is checked at the boundary: a wrong one costs that plugin only, with one warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from autotune import hookimpl
from autotune.errors import AutotuneError
from autotune.plugins.backend import Availability, Categorical, IntRange, Params
from autotune.plugins.boundary import PluginFault, checked_space, outside
from autotune.plugins.exporter import Exporter
from autotune.testing import FakeBackend, InlineBackends, manager_with
from autotune.testing.conformance import assert_plugin_boundary, example_hardware
from autotune.testing.tuning import SMALL_WORKLOAD, tune_with_plugins


class Collecting:
    """A reporter that keeps its warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def begin(self, *args: Any) -> None: ...
    def info(self, message: str) -> None: ...
    def trial(self, *args: Any) -> None: ...

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class YieldsText:
    @hookimpl
    def autotune_backends(self) -> Iterator[Any]:
        yield "llamacpp"  # a name instead of a Backend
        yield 42

    @hookimpl
    def autotune_exporters(self) -> Iterator[Any]:
        yield "json"


class AvailabilityRaises(FakeBackend):
    def availability(self) -> Availability:
        raise RuntimeError("libfoo.so missing")


class PredictsADict(FakeBackend):
    def predict(self, *args: Any) -> Any:
        return {"memory_bytes": 1}


class PreparesNothing(FakeBackend):
    def prepare(self, *args: Any) -> Any:
        return None


class SpaceAsAList(FakeBackend):
    def search_space(self, *args: Any) -> Any:
        return ["quant", "threads"]


class CanonicalOutsideItsSpace(FakeBackend):
    """Spells f16 with a thread count its space (1..4) does not offer, as mlx spelled unquantized weights with a
    group size of None its space does not offer."""

    def canonical_params(self, params: Params) -> Params:
        return {**params, "threads": 8} if params.get("quant") == "f16" else dict(params)


def named(cls: type[FakeBackend]) -> InlineBackends:
    return InlineBackends(cls(name="bad"))


def test_a_hook_yielding_text_costs_its_plugin_one_warning_and_no_command(model: Path) -> None:
    manager = manager_with(FakeBackend(), builtins=True)
    manager.register(YieldsText(), "texty")
    assert list(manager.backends()) == ["fake"] and "json" in manager.exporters()  # the built-in json exporter
    manager.backends()  # asked again: no second warning
    texty = [w for w in manager.warnings if "'texty'" in w]
    assert len(texty) == 2 and "yielded str 'llamacpp', not a Backend in autotune_backends" in texty[0]
    assert "not an Exporter in autotune_exporters" in texty[1]
    assert tune_with_plugins(model, InlineBackends(FakeBackend()), YieldsText()).winner.backend == "fake"


@pytest.mark.parametrize("backend, said", [
    (AvailabilityRaises, "raised RuntimeError('libfoo.so missing') in availability()"),
    (PredictsADict, "bad.predict() returned dict {'memory_bytes': 1}, not a Prediction"),
    (PreparesNothing, "bad.prepare() returned NoneType None, not an Artifact"),
    (SpaceAsAList, "bad.search_space() returned list ['quant', 'threads'], not a dict"),
])
def test_a_wrong_value_costs_its_backend_only_with_one_warning(model: Path, backend: type[FakeBackend], said: str) -> None:
    reporter = Collecting()
    result = tune_with_plugins(model, InlineBackends(FakeBackend()), named(backend), reporter=reporter,  # type: ignore[arg-type]
                               trials=6)
    assert result.winner.backend == "fake"
    about = [w for w in reporter.warnings if "'bad'" in w]
    assert len(about) == 1 and said in about[0], reporter.warnings
    assert sum(r.spent for r in result.records if r.backend == "bad") <= 1  # not trial after trial


def test_a_canonical_spelling_outside_the_space_does_not_drop_the_backend(model: Path) -> None:
    # The starting point was queued in its canonical spelling, which Optuna refused ("8 not in 1..4"),
    # and the backend was dropped "in canonical_params" before it measured anything.
    reporter = Collecting()
    result = tune_with_plugins(model, named(CanonicalOutsideItsSpace), reporter=reporter, backends=("bad",))
    assert reporter.warnings == []
    assert result.records[0].status == "measured" and result.records[0].params["quant"] == "f16"


class StartsElsewhere(FakeBackend):
    def starting_points(self, *args: Any) -> list[Params]:
        return [{"quant": "q2_k", "threads": 4}, {"quant": "f16", "threads": 99}, {"quant": "q8_0", "threads": 2}]


def test_a_starting_point_outside_the_space_is_left_out_with_one_warning(model: Path) -> None:
    reporter = Collecting()
    result = tune_with_plugins(model, named(StartsElsewhere), reporter=reporter, backends=("bad",))
    assert len(reporter.warnings) == 1 and "2 starting point(s) left out" in reporter.warnings[0]
    assert result.records[0].params == {"quant": "q8_0", "threads": 2}


def test_a_backend_that_cannot_be_sent_to_a_worker_is_dropped_with_one_warning(model: Path) -> None:
    class DefinedInAFunction(FakeBackend):  # pickle cannot find it by name: it never reaches a worker
        pass

    reporter = Collecting()
    result = tune_with_plugins(model, InlineBackends(FakeBackend()), InlineBackends(DefinedInAFunction(name="bad")),
                               reporter=reporter, trials=6)
    assert result.winner.backend == "fake"
    about = [w for w in reporter.warnings if "'bad'" in w]
    assert len(about) == 1 and "cannot be sent to a worker process" in about[0], reporter.warnings


@pytest.mark.parametrize("space, said", [
    ({}, "empty search space"),
    ({"q": Categorical(())}, "has no choices"),
    ({"q": Categorical(([1],))}, "offers list"),
    ({"t": IntRange(4, 1)}, "an IntRange needs"),
    ({"t": (1, 2)}, "not a Categorical or an IntRange"),
])
def test_search_spaces_are_checked(space: Any, said: str) -> None:
    with pytest.raises(PluginFault, match=said):
        checked_space(space, "x.search_space()")


def test_outside_names_what_is_not_in_the_space() -> None:
    space = {"quant": Categorical(("f16", "q8_0")), "threads": IntRange(1, 8, step=1)}
    assert outside(space, {"quant": "f16", "threads": 2}) is None
    assert "threads=None" in str(outside(space, {"quant": "f16", "threads": None}))
    assert "no 'threads'" in str(outside(space, {"quant": "f16"}))
    assert "threads=True" in str(outside(space, {"quant": "f16", "threads": True}))  # a bool is no thread count
    assert "extra" in str(outside(space, {"quant": "f16", "threads": 2, "extra": 1}))


class OnlySomeQuants(BaseModel):
    """A parameter model that forgot a quantization the space offers (q5_1)."""

    model_config = ConfigDict(extra="forbid")
    quant: Literal["f16", "q8_0", "q4_0"]
    threads: int


class RefusesItsOwnConfiguration(FakeBackend):
    params_model = OnlySomeQuants


@pytest.mark.parametrize("backend", [PredictsADict, SpaceAsAList, StartsElsewhere, RefusesItsOwnConfiguration],
                         ids=lambda cls: cls.__name__)
def test_the_conformance_suite_finds_the_same_faults(model: Path, backend: type[FakeBackend]) -> None:
    # What third parties' own tests learn from BackendConformance.test_every_value_passes_the_plugin_boundary.
    fake = backend()
    source = fake.inspect(model)
    with pytest.raises((PluginFault, AutotuneError, AssertionError)):
        assert_plugin_boundary(fake, source, example_hardware(), SMALL_WORKLOAD)
    assert_plugin_boundary(FakeBackend(), source, example_hardware(), SMALL_WORKLOAD)  # the well-behaved one passes


def test_an_exporter_yielded_twice_by_one_plugin_is_one_warning() -> None:
    class TwoTexts:
        @hookimpl
        def autotune_exporters(self) -> Iterator[Any]:
            yield "a"
            yield Exporter(name="fine", description="renders", render=lambda profile: "ok")
            yield "b"

    manager = manager_with()
    manager.register(TwoTexts(), "two")
    assert list(manager.exporters()) == ["fine"]
    assert len([w for w in manager.warnings if "'two'" in w]) == 1


class SlowToPrefill(FakeBackend):
    """Runs here (its time would be real) and prefills 20 tokens a second: a context of 2,048 takes minutes."""

    measures_this_machine = True

    def measure(self, *args: Any) -> Any:
        measurement = super().measure(*args)
        measurement.prefill_tps = 20.0
        return measurement


def test_a_backend_that_cannot_finish_one_measurement_in_the_timeout_is_dropped_after_one_short_run(model: Path) -> None:
    # MLX on a 2-core CPU: 300 s on each of its first trials until the timeout, then "No configuration met the
    # budget". One short run (no deep context) tells the deep prefill alone needs ~100 s of a 60 s timeout.
    from autotune.probe.machine import probe_here
    from autotune.workload import Workload

    reporter = Collecting()
    workload = Workload(prompt_tokens=16, gen_tokens=8, context=2048, runs=3)  # decoding measured at depth ~2,000 too
    result = tune_with_plugins(model, InlineBackends(FakeBackend()), InlineBackends(SlowToPrefill(name="slow")),
                               reporter=reporter, hardware=probe_here(measure_bandwidth=False), workload=workload,
                               trials=6, timeout_s=60)
    assert result.winner.backend == "fake"
    slow = [r for r in result.records if r.backend == "slow"]
    assert len(slow) <= 1 and all(r.status == "failed" and "over --timeout 60s" in (r.reason or "") for r in slow)
    assert len([w for w in reporter.warnings if "'slow'" in w]) == 1


class VersionRaises(FakeBackend):
    def version(self) -> str | None:
        raise RuntimeError("no __version__")


def test_a_raising_version_is_said_once_and_costs_only_its_own_figures(caplog: pytest.LogCaptureFixture) -> None:
    # It was silent in `answer` and `store`: the user saw no figures for the backend and no reason.
    from autotune.plugins.backend import runtime_version

    broken = VersionRaises(name="noversion")
    assert runtime_version(broken).startswith("unknown (version check raised RuntimeError)")
    runtime_version(broken)
    said = [r.getMessage() for r in caplog.records if "noversion" in r.getMessage()]
    assert len(said) == 1 and "version() raised RuntimeError('no __version__')" in said[0]


class RendersNothing:
    @hookimpl
    def autotune_exporters(self) -> Iterator[Exporter]:
        yield Exporter(name="nothing", description="returns None", render=lambda profile: None)  # type: ignore[arg-type,return-value]


def test_an_exporter_rendering_something_else_than_text_is_left_out_or_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A None in the profile's exports failed the profile's own validation: the whole run's answer was lost.
    from autotune.cli.main import main
    from autotune.plugins.exporter import render_exports
    from autotune.plugins.manager import get_plugin_manager
    from autotune.testing.profiles import sample_profile

    reporter = Collecting()
    exporter = next(RendersNothing().autotune_exporters())
    assert render_exports([exporter], sample_profile("llamacpp"), reporter) == {}  # type: ignore[arg-type]
    assert reporter.warnings == ["exporter 'nothing' failed and was left out of the profile: exporter 'nothing' "
                                 "render() returned NoneType None, not a str"]
    manager = get_plugin_manager()
    manager.register(RendersNothing(), "nothing")
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager", lambda **_: manager)
    profile = tmp_path / "p.json"
    profile.write_text(sample_profile("llamacpp").to_json())
    assert main(["export", str(profile), "--format", "nothing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "not a str" in captured.err


class ManyFaults(FakeBackend):
    """A starting point outside its space, then a prediction of the wrong type: two faults of one plugin."""

    def starting_points(self, *args: Any) -> list[Params]:
        return [{"quant": "zz", "threads": 1}, {"quant": "f16", "threads": 4}]

    def predict(self, *args: Any) -> Any:
        return {"memory_bytes": 1}


def test_a_plugin_with_several_faults_costs_one_warning_per_command(model: Path) -> None:
    reporter = Collecting()
    infos: list[str] = []
    reporter.info = infos.append  # type: ignore[method-assign]
    result = tune_with_plugins(model, InlineBackends(FakeBackend()), named(ManyFaults), reporter=reporter, trials=6)
    assert result.winner.backend == "fake"
    assert len([w for w in reporter.warnings if "'bad'" in w]) == 1, reporter.warnings
    assert any("bad.predict() returned dict" in line for line in infos)  # the later fault is still told
