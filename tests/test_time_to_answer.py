"""Spending measurement only where it can change the answer: screens, early stops, refusals known in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autotune import SilentReporter
from autotune.errors import BackendUnavailable
from autotune.hookspecs import hookimpl
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Params
from autotune.plugins.conversion import Conversion
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.tuning import SMALL_WORKLOAD, tune_with_plugins

WORKLOAD = SMALL_WORKLOAD


def tune(model: Path, *plugins: object, reporter: SilentReporter | None = None, **options: Any) -> Any:
    settings: dict[str, Any] = {"trials": 8, "hardware": example_hardware(cores=4), **options}
    return tune_with_plugins(model, *plugins, reporter=reporter, **settings)


class Plugin:
    """Contributes backends and conversions given to it, as a third-party plugin would."""

    def __init__(self, backends: tuple[Any, ...] = (), conversions: tuple[Conversion, ...] = ()) -> None:
        self.backends, self.converters = backends, conversions

    @hookimpl
    def autotune_backends(self) -> Any:
        yield from self.backends

    @hookimpl
    def autotune_conversions(self) -> Any:
        yield from self.converters


def test_slower_configurations_of_a_measured_artifact_are_screened_out_cheaply(model: Path) -> None:
    reporter = SilentReporter()
    result = tune(model, Plugin((FakeBackend(),)), reporter=reporter, objective="latency", patience=0, trials=10)
    screened = [r for r in result.records if r.status == "screened-out"]
    assert screened, "slower configurations were measured in full"
    for record in screened:
        assert record.measurement is not None and record.measurement.runs == 1 and record.measurement.deep_depth is None
        assert record.quality is None and "cannot beat" in (record.reason or "") or "exceeds" in (record.reason or "")
    assert any(m.startswith("screening fake") for m in reporter.messages)
    best = result.profile.measured
    assert best.runs == WORKLOAD.runs  # the answer rests on a full measurement, never on a screen


def test_without_screening_every_configuration_is_measured_in_full(model: Path) -> None:
    result = tune(model, Plugin((FakeBackend(),)), objective="latency", patience=0, screening=False, trials=6)
    assert not [r for r in result.records if r.status == "screened-out"]


def test_the_search_stops_when_nothing_beats_the_best_beyond_the_noise(model: Path) -> None:
    reporter = SilentReporter()
    tune(model, Plugin((FakeBackend(),)), reporter=reporter, objective="latency", patience=3, trials=14)
    stop = [m for m in reporter.messages if m.startswith("stopped after")]
    assert len(stop) == 1 and "could not beat" in stop[0] and "noise" in stop[0]
    assert len(reporter.trials) < 14 * 2


def test_the_source_itself_scores_zero_loss_and_its_own_bits_per_byte(model: Path) -> None:
    # The reference pass every later score reads from runs once, and gives the source its bits per byte too.
    reporter = SilentReporter()
    result = tune(model, Plugin((FakeBackend(),)), reporter=reporter, measure_quality=True, trials=1, patience=0)
    record = next(r for r in result.records if r.params["quant"] == "f16" and r.status == "measured")
    quality = record.quality
    assert quality is not None and quality.kl_divergence is not None and quality.kl_divergence.high == 0.0
    assert "no loss by definition" in (quality.reference or "") and quality.bits_per_byte is not None


def _never_convert(source: Path, out_dir: Path) -> Path:
    raise AssertionError("the conversion ran for a backend that says it cannot run the model")


class HfOnly(FakeBackend):
    """Reads only "hf" folders (so it needs a conversion) and says it cannot run sliding-window models."""

    source_formats = frozenset({"hf"})

    def supports(self, source: ModelSource) -> str | None:
        return "no sliding windows here" if source.architecture == "fake" else None


def test_a_backend_that_cannot_run_the_model_is_skipped_before_converting(model: Path) -> None:
    reporter = SilentReporter()
    conversion = Conversion(name="gguf-to-hf-test", source_format="gguf", target_format="hf", convert=_never_convert)
    tune(model, Plugin((FakeBackend(), HfOnly(name="hfonly")), (conversion,)), reporter=reporter, trials=2)
    assert any("'hfonly' skipped for this model, before any conversion: no sliding windows" in w
               for w in reporter.warnings)


class RefusesAtPrepare(FakeBackend):
    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        raise BackendUnavailable("this runtime cannot load the fake architecture")


def test_a_refusal_is_remembered_and_the_next_run_skips_the_backend_at_once(model: Path) -> None:
    first = SilentReporter()
    tune(model, Plugin((FakeBackend(), RefusesAtPrepare(name="refuser"))), reporter=first, trials=3)
    assert any("'refuser' dropped for this model" in w for w in first.warnings)
    again = SilentReporter()
    result = tune(model, Plugin((FakeBackend(), RefusesAtPrepare(name="refuser"))), reporter=again, trials=3)
    assert any("'refuser' skipped for this model, before any conversion: this runtime cannot load" in w
               for w in again.warnings)
    assert result.profile.backend.name == "fake"


@pytest.mark.parametrize("metadata, window", [
    ({"sliding_window": 512}, 512),
    ({"config": {"sliding_window": 4096, "layer_types": ["sliding_attention", "full_attention"]}}, 4096),
    ({"config": {"sliding_window": 4096, "layer_types": ["full_attention"]}}, None),
    ({"config": {"text_config": {"sliding_window": 1024}}}, 1024),
    ({}, None),
])
def test_sliding_windows_are_read_from_gguf_and_hf_metadata(metadata: dict[str, object], window: int | None) -> None:
    source = ModelSource(path=Path("m"), format="gguf", sha256="0" * 64, metadata=metadata)
    assert source.sliding_window == window


class CannotCompete(FakeBackend):
    def not_worth_tuning(self, hardware: Any) -> str | None:
        return "no GPU here; name it to tune it anyway"


def test_a_backend_that_cannot_compete_is_left_out_unless_named(model: Path) -> None:
    reporter = SilentReporter()
    result = tune(model, Plugin((FakeBackend(), CannotCompete(name="slowpoke"))), reporter=reporter, trials=2)
    assert {r.backend for r in result.records} == {"fake"}
    assert any("slowpoke left out: no GPU here" in m for m in reporter.messages)
    named = tune(model, Plugin((FakeBackend(), CannotCompete(name="slowpoke"))), backends=("slowpoke",), trials=2)
    assert {r.backend for r in named.records} == {"slowpoke"}


def test_a_resumed_study_that_found_nothing_better_measures_nothing_new(model: Path) -> None:
    tune(model, Plugin((FakeBackend(),)), objective="latency", patience=3, trials=14)
    again = SilentReporter()
    result = tune(model, Plugin((FakeBackend(),)), reporter=again, objective="latency", patience=3, trials=14)
    assert any(m.startswith("nothing new to measure") for m in again.messages)
    assert result.new_measurements == 0 and not again.trials


class HfReader(FakeBackend):
    """Reads only "hf" folders, so the GGUF needs a conversion first."""

    source_formats = frozenset({"hf"})


def test_a_conversion_needing_more_memory_than_the_machine_has_is_refused_not_attempted(model: Path) -> None:
    reporter = SilentReporter()
    conversion = Conversion(name="huge-to-hf", source_format="gguf", target_format="hf", convert=_never_convert,
                            memory_estimate=lambda source: 10**15)
    tune(model, Plugin((FakeBackend(), HfReader(name="hfreader")), (conversion,)), reporter=reporter, trials=2)
    assert any("'hfreader' skipped: conversion huge-to-hf would need about" in w and "not attempted" in w
               for w in reporter.warnings)


def test_the_profile_names_the_backends_left_out_and_why(model: Path) -> None:
    conversion = Conversion(name="gguf-to-hf-test", source_format="gguf", target_format="hf", convert=_never_convert)
    result = tune(model, Plugin((FakeBackend(), HfOnly(name="hfonly"), CannotCompete(name="slowpoke")), (conversion,)),
                  trials=2)
    left_out = result.profile.study["left_out_backends"]
    assert left_out == {"hfonly": "no sliding windows here", "slowpoke": "no GPU here; name it to tune it anyway"}


def test_the_reference_is_stored_once_before_the_first_score(model: Path, cache: Path) -> None:
    result = tune(model, Plugin((FakeBackend(),)), measure_quality=True, trials=4, patience=0, screening=False)
    scored = [r for r in result.records if r.quality and r.quality.kl_divergence
              and r.quality.kl_divergence.value > 0]
    assert scored, "no variant other than the source was scored"
    stores = list((cache / "quality" / "reference").iterdir())
    assert len(stores) == 1 and (stores[0] / "complete").exists()
