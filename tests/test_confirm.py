"""The confirmation stage: decisions on synthetic rounds, and the whole stage on the noisy fake backend."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.decide.judgment import memory_guard
from autotune.errors import NothingFits
from autotune.plugins.backend import Artifact
from autotune.profile.schema import ArtifactInfo
from autotune.record import TrialRecord
from autotune.search.confirm import Finalist, decide
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.workload import Workload

ARTIFACT = Artifact(path=Path("/x"), format="gguf", precision="q4_0", bits_per_weight=4.5, size_bytes=1)
BUDGET = Budget.parse("1GB", "50ms")


def finalist(label: str, tps: list[float], p95: list[float], bits: float = 4.5, memory: int = 100) -> Finalist:
    record = TrialRecord(number=int(label.strip("#") or 0) if label.startswith("#") else 0, status="measured",
                         backend="fake", params={"label": label},
                         artifact=ArtifactInfo(path="/x", format="gguf", precision="q", bits_per_weight=bits, size_bytes=1),
                         measurement={"load_s": 0, "ttft_ms": 1, "itl_p50_ms": 1, "itl_p95_ms": p95[0],
                                      "decode_tps": tps[0], "prefill_tps": 1, "peak_rss_bytes": memory, "runs": 1,
                                      "spread": 0})
    return Finalist(label=label, backend="fake", params={"label": label}, artifact=ARTIFACT, record=record,
                    decode_tps=tps, itl_p95_ms=p95)


def noisy(mean: float, rng: random.Random, rounds: int = 5, sd: float = 0.05) -> list[float]:
    return [mean * rng.gauss(1, sd) for _ in range(rounds)]


def test_a_clear_winner_is_declared_with_its_speedup() -> None:
    a = finalist("#1", [110, 111, 109, 112, 110], [20] * 5)
    b = finalist("#2", [100, 101, 99, 100, 102], [22] * 5)
    base = finalist("untuned", [70, 72, 69, 71, 70], [30] * 5)
    record, confirmation, _ = decide([a, b], base, BUDGET, strict=False, rounds=5)
    assert record is a.record and confirmation.verdict == "winner"
    assert confirmation.speedup_over_untuned.low > 1.4 and confirmation.speedup_over_untuned.high < 1.7


def test_a_tie_is_broken_by_quality_then_memory() -> None:
    a = finalist("#1", [100, 103, 98, 101, 99], [20] * 5, bits=4.5)
    b = finalist("#2", [101, 99, 100, 102, 98], [20] * 5, bits=8.5)
    base = finalist("untuned", [60] * 5, [30] * 5)
    record, confirmation, notes = decide([a, b], base, BUDGET, strict=False, rounds=5)
    assert confirmation.verdict == "tie" and record is b.record, "the higher-quality one wins a speed tie"
    assert any("tie" in n for n in notes)


def test_marginal_latency_is_flagged_and_strict_refuses_it() -> None:
    a = finalist("#1", [100] * 5, [45, 52, 48, 55, 47], bits=8.5)
    base = finalist("untuned", [60] * 5, [30] * 5)
    _, confirmation, _ = decide([a], base, BUDGET, strict=False, rounds=5)
    assert confirmation.marginal and confirmation.verdict == "single finalist"
    with pytest.raises(NothingFits, match="strict"):
        decide([a], base, BUDGET, strict=True, rounds=5)


def test_an_outlier_round_does_not_make_a_wrong_winner() -> None:
    a = finalist("#1", [110, 111, 36, 112, 110, 109, 111, 110, 112, 111], [20] * 10)
    b = finalist("#2", [100] * 10, [20] * 10)
    base = finalist("untuned", [60] * 10, [30] * 10)
    record, confirmation, _ = decide([a, b], base, BUDGET, strict=False, rounds=10)
    assert record is a.record and confirmation.verdict == "winner"


def test_a_close_noisy_pair_never_crowns_the_slower_one() -> None:
    rng = random.Random(7)
    wrong = 0
    for _ in range(60):
        a = finalist("#1", noisy(100, rng), [20] * 5)  # truly 5% faster
        b = finalist("#2", noisy(95, rng), [20] * 5)
        base = finalist("untuned", noisy(60, rng), [30] * 5)
        record, confirmation, _ = decide([a, b], base, BUDGET, strict=False, rounds=5)
        wrong += confirmation.verdict == "winner" and record is b.record
    assert wrong == 0


def test_confirmation_stage_on_the_noisy_fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    # q4_0 and q5_1 are equally fast here: a strict winner between them would be noise.
    backend = FakeBackend(noise=0.05, speed={"q5_1": 0.75})
    manager = manager_with(backend)
    options = TuneOptions(trials=6, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3, objective="latency")
    result = Tuner(model, Budget.parse("400MB", "40ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64, depth=0),
                   options, manager=manager, hardware=example_hardware(cores=4), reporter=SilentReporter()).run()
    confirmation = result.profile.confirmation
    assert confirmation is not None and confirmation.rounds == 5
    # q4_0 and q5_1 decode equally fast: claiming a strict winner between them would be reading noise.
    assert result.profile.params["quant"] in ("q4_0", "q5_1")
    assert confirmation.verdict in ("tie", "single finalist"), confirmation.notes
    assert confirmation.speedup_over_untuned is not None and confirmation.speedup_over_untuned.value > 1
    assert confirmation.untuned_params == {"quant": "f16", "threads": 2}


def test_the_rule_of_thumb_is_measured_beside_and_a_tie_is_said_not_claimed() -> None:
    rng = random.Random(7)
    chosen = finalist("#1", noisy(100, rng), [20] * 5)
    thumb = finalist("rule of thumb", noisy(100, rng), [20] * 5)  # the same speed: inside the noise
    base = finalist("untuned", [60] * 5, [30] * 5)
    _, confirmation, notes = decide([chosen], base, BUDGET, strict=False, rounds=5, rule_of_thumb=thumb)
    ratio = confirmation.speedup_over_rule_of_thumb
    # Five noisy rounds of equal speeds: whatever the interval's luck, no win or loss may be claimed.
    assert ratio is not None and confirmation.versus_rule_of_thumb == "tie"
    assert any("tied with the rule of thumb" in n for n in notes)

    slower_thumb = finalist("rule of thumb", [70, 71, 69, 70, 72], [25] * 5)
    _, confirmation, _ = decide([chosen], base, BUDGET, strict=False, rounds=5, rule_of_thumb=slower_thumb)
    assert confirmation.versus_rule_of_thumb == "faster" and confirmation.speedup_over_rule_of_thumb.low > 1.2

    _, confirmation, _ = decide([chosen], base, BUDGET, strict=False, rounds=5, rule_of_thumb=chosen)
    assert confirmation.versus_rule_of_thumb == "same" and confirmation.speedup_over_rule_of_thumb is None


def test_rerunning_the_same_command_reuses_the_confirmation_rounds(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))

    def run() -> tuple[object, SilentReporter]:
        reporter = SilentReporter()
        options = TuneOptions(trials=4, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3)
        result = Tuner(model, Budget.parse("400MB", "40ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64, depth=0),
                       options, manager=manager_with(FakeBackend(noise=0.05)), hardware=example_hardware(cores=4),
                       reporter=reporter).run()
        return result, reporter

    first, first_reporter = run()
    again, reporter = run()
    assert not any(m.startswith("reusing the 5 confirmation rounds") for m in first_reporter.messages)
    assert any(m.startswith("reusing the 5 confirmation rounds") for m in reporter.messages)
    assert not any(m.startswith("round ") for m in reporter.messages)  # nothing measured again
    assert again.profile.confirmation == first.profile.confirmation  # type: ignore[attr-defined]


def test_every_confirmation_measurement_has_a_memory_guard(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autotune.search.confirm as confirm

    guards: list[tuple[str, int | None]] = []

    def guarded(backend, artifact, params, workload, **kwargs):
        guards.append((str(params), kwargs["memory_limit_bytes"]))
        return measure(backend, artifact, params, workload, **kwargs)

    measure = confirm.measure
    monkeypatch.setattr(confirm, "measure", guarded)
    budget, hardware = Budget.parse("400MB", "40ms"), example_hardware(cores=4)
    options = TuneOptions(trials=3, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3)
    Tuner(model, budget, Workload(prompt_tokens=8, gen_tokens=4, context=64, depth=0), options,
          manager=manager_with(FakeBackend()), hardware=hardware, reporter=SilentReporter()).run()
    untuned = str(FakeBackend().untuned_params(None, hardware, Workload()))  # type: ignore[arg-type]
    assert untuned in {params for params, _ in guards}, "the untuned baseline was measured"
    assert {limit for _, limit in guards} == {memory_guard(budget, hardware)}


def test_the_memory_guard_lies_above_the_budget_and_within_the_machine() -> None:
    hardware = example_hardware(memory_gib=4)
    assert memory_guard(Budget.parse("1GB", "50ms"), hardware) == 1_000_000_000 + 512 * 2**20
    assert memory_guard(Budget.parse("100GB", "50ms"), hardware) == hardware.worker_memory_ceiling()
