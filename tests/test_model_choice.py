"""Several candidate models in one run: the choice rule, the candidates --model names, and the run on fake backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autotune import SilentReporter, TuneOptions
from autotune.budget import Budget
from autotune.cli.main import main
from autotune.decide.model_choice import choose_model, why_not
from autotune.errors import InputError, NothingFits
from autotune.hardware import Hardware
from autotune.measurement import Measurement
from autotune.model.candidates import candidate_paths
from autotune.model.source import ModelSource, cached_content_hash
from autotune.plugins.backend import Artifact, Params, Prediction
from autotune.profile.reading import load_profile
from autotune.profile.schema import CandidateBest, CandidateModel, Interval, ModelInfo
from autotune.search.models import tune_models
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.workload import Workload

WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=3, depth=0)


def candidate(name: str, *, bpb: tuple[float, float, float] | None = None, tps: float = 50.0, p95: float = 25.0,
              memory: int = 200 * 2**20, weight_bits: float | None = None, fits: bool = True) -> CandidateModel:
    """A tuned candidate as the profile lists it (only the figures the choice reads matter)."""
    best = CandidateBest(backend="fake", params={}, precision="q4_0", decode_tps=tps, itl_p95_ms=p95,
                         peak_rss_bytes=memory, weight_bits=weight_bits,
                         bits_per_byte=Interval(value=bpb[0], low=bpb[1], high=bpb[2]) if bpb else None)
    return CandidateModel(model=ModelInfo(path=name, format="gguf", sha256=name), best=best if fits else None,
                          reason=None if fits else "nothing fits")


def test_lower_bits_per_byte_wins_when_the_intervals_are_apart_even_if_slower() -> None:
    slow_good = candidate("a", bpb=(1.10, 1.05, 1.15), tps=30)
    fast_worse = candidate("b", bpb=(1.40, 1.35, 1.45), tps=90)
    assert choose_model([fast_worse, slow_good], "quality") is slow_good
    assert "lower quality" in why_not(fast_worse, slow_good, "quality")


def test_overlapping_bits_per_byte_is_a_tie_broken_by_speed() -> None:
    a = candidate("a", bpb=(1.10, 1.00, 1.20), tps=40)
    b = candidate("b", bpb=(1.15, 1.05, 1.25), tps=80)
    assert choose_model([a, b], "quality") is b
    assert "tie" in why_not(a, b, "quality")


def test_speeds_within_the_noise_are_a_tie_broken_by_memory() -> None:
    # Separate runs differ by ±5–10%: 5% faster is no win between models measured in separate runs.
    a = candidate("a", bpb=(1.10, 1.00, 1.20), tps=84, memory=400 * 2**20)
    b = candidate("b", bpb=(1.12, 1.02, 1.22), tps=80, memory=150 * 2**20)
    assert choose_model([a, b], "quality") is b


def test_a_candidate_without_a_fitting_configuration_is_never_chosen() -> None:
    fits = candidate("a", bpb=(1.6, 1.5, 1.7))
    better_but_over = candidate("b", bpb=(1.0, 0.9, 1.1), fits=False)
    assert choose_model([better_but_over, fits], "quality") is fits
    with pytest.raises(ValueError, match="no candidate"):
        choose_model([better_but_over], "quality")


def test_without_bits_per_byte_weight_bits_stand_in() -> None:
    # A proxy is never compared with a measurement: one candidate without bits per byte puts all on weight bits.
    big = candidate("big", weight_bits=1.6e9, tps=30)
    small = candidate("small", bpb=(1.0, 0.9, 1.1), weight_bits=0.6e9, tps=90)
    assert choose_model([small, big], "quality") is big
    assert "weight bits" in why_not(small, big, "quality")


def test_latency_and_memory_objectives_compare_those_first() -> None:
    a = candidate("a", bpb=(1.0, 0.9, 1.1), p95=30, memory=300 * 2**20)
    b = candidate("b", bpb=(1.5, 1.4, 1.6), p95=12, memory=100 * 2**20)
    assert choose_model([a, b], "latency") is b
    assert choose_model([a, b], "memory") is b
    assert choose_model([a, b], "quality") is a


def fake_model(folder: Path, name: str, parameters: int) -> Path:
    """A file the sized fake backend reads as a model of ``parameters`` parameters."""
    path = folder / name
    path.write_bytes(b"GGUF" + json.dumps({"parameters": parameters}).encode())
    return path


class SizedFake(FakeBackend):
    """The fake backend with each model's size read from its file: memory and decode latency grow with it."""

    def _sized(self, parameters: int) -> FakeBackend:
        return FakeBackend(parameters=parameters, base_ms=self.base_ms * parameters / 100_000_000)

    def inspect(self, path: Path) -> ModelSource:
        parameters = int(json.loads(path.read_bytes()[4:])["parameters"])
        return ModelSource(path=path, format="gguf", sha256=cached_content_hash(path), architecture="fake",
                           parameters=parameters, precision="f16")

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        assert source.parameters is not None
        return self._sized(source.parameters).predict(source, params, workload, hardware)

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        assert source.parameters is not None
        artifact = self._sized(source.parameters).prepare(source, params, workdir)
        artifact.path.write_text(json.dumps({"quant": params["quant"], "parameters": source.parameters}))
        return artifact

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        parameters = int(json.loads(artifact.path.read_text())["parameters"])
        return self._sized(parameters).measure(artifact, params, workload)


def test_each_candidate_is_tuned_and_the_fitting_one_with_more_weight_bits_wins_down_a_ladder(tmp_path: Path) -> None:
    # One store for the three budgets, as a user's reruns share it: the smaller budgets reuse the figures measured
    # for the first (a measurement does not depend on the budget), which keeps this test to a few measurements.
    big, small = fake_model(tmp_path, "big.gguf", 300_000_000), fake_model(tmp_path, "small.gguf", 50_000_000)
    options = TuneOptions(trials=2, timeout_s=30, measure_quality=False, confirm_rounds=0, seed=1, patience=0)
    manager, hardware = manager_with(SizedFake(), builtins=True), example_hardware(cores=4)

    def tune(budget: Budget, reporter: SilentReporter) -> Any:
        return tune_models([big, small], budget, WORKLOAD, options, manager=manager, hardware=hardware,
                           reporter=reporter)

    # 300M parameters fit 300 MB at q4_0 or q5_1 (1.35 or 1.8 Gbit of weights); 50M carry 0.8 Gbit at most (f16).
    reporter = SilentReporter()
    profile = tune(Budget.parse("300MB", "100ms"), reporter).chosen.profile
    assert Path(profile.model.path).name == "big.gguf"
    assert [Path(c.model.path).name for c in profile.candidates] == ["big.gguf", "small.gguf"]
    chosen, other = profile.candidates
    assert chosen.chosen and not other.chosen and other.reason and "weight bits" in other.reason
    assert chosen.best is not None and other.best is not None
    assert chosen.best.weight_bits is not None and other.best.weight_bits is not None
    assert chosen.best.weight_bits > other.best.weight_bits
    assert chosen.best.params == profile.params and chosen.best.decode_tps == profile.measured.decode_tps
    assert chosen.best.peak_rss_bytes is not None and chosen.best.peak_rss_bytes <= 300_000_000
    assert profile.model_choice and "bits per byte" in profile.model_choice
    assert any("candidate model 2/2: small.gguf" in m for m in reporter.messages)
    written = tmp_path / "profile.json"
    written.write_text(profile.to_json())
    assert load_profile(written).candidates == profile.candidates  # the schema reads back what it wrote

    # 300M parameters need 222 MB even at q4_0: over 200 MB, so only the small model can answer, and the big one
    # is listed with why.
    reporter = SilentReporter()
    choice = tune(Budget.parse("200MB", "100ms"), reporter)
    profile = choice.chosen.profile
    assert Path(profile.model.path).name == "small.gguf"
    unfit = next(c for c in profile.candidates if Path(c.model.path).name == "big.gguf")
    assert unfit.best is None and not unfit.chosen and unfit.reason and "--budget" in unfit.reason
    assert choice.results[big] is None and any("big.gguf" in w for w in reporter.warnings)

    with pytest.raises(NothingFits) as error:  # nothing of either fits: each one's reason is named
        tune(Budget.parse("60MB", "100ms"), SilentReporter())
    assert "big.gguf" in str(error.value) and "small.gguf" in str(error.value)


def test_a_folder_stands_for_the_model_files_in_it(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    b, a = fake_model(folder, "b.gguf", 1), fake_model(folder, "a.gguf", 1)
    (folder / "notes.txt").write_text("not a model")
    assert candidate_paths([str(folder)]) == [a, b]
    single = fake_model(tmp_path, "c.gguf", 1)
    assert candidate_paths([str(single), str(folder)]) == [single, a, b]


def test_the_same_model_twice_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    a = fake_model(folder, "a.gguf", 1)
    with pytest.raises(InputError, match="named twice"):
        candidate_paths([str(a), str(folder)])  # through its folder
    with pytest.raises(InputError, match="named twice"):
        candidate_paths([str(a), str(folder / ".." / "models" / "a.gguf")])  # by another spelling of its path
    impostor = folder / "b.gguf"
    impostor.write_text("not a model")
    with pytest.raises(InputError, match="b.gguf.*not a GGUF file"):  # refused before anything is tuned
        candidate_paths([str(folder)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="neither a model folder nor a folder of model files"):
        candidate_paths([str(empty)])


def test_the_command_line_says_duplicates_and_missing_candidates_in_one_line(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    a = fake_model(tmp_path, "a.gguf", 1)
    status = main(["run", "--model", str(a), "--model", str(a), "--budget", "1GB", "--latency", "50ms",
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "named twice" in err and len(err.strip().splitlines()) == 1
    status = main(["run", "--model", str(a), "--model", str(tmp_path / "gone.gguf"), "--budget", "1GB",
                   "--latency", "50ms"])
    err = capsys.readouterr().err
    assert status == 2 and "model not found" in err and "gone.gguf" in err and len(err.strip().splitlines()) == 1


def test_a_multi_model_profile_is_named_for_every_candidate() -> None:
    from autotune.cli.run import profile_stem

    stem = profile_stem(Path("gemma-3-270m-q4_k_m+SmolLM2-135M-Instruct.Q4_1"), "3d462888" + "0" * 56)
    assert stem == "gemma-3-270m-q4_k_m+SmolLM2-135M-Instruct.Q4_1-3d462888"
