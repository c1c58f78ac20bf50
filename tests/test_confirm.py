"""The confirmation stage: decisions on synthetic rounds, and the whole stage on the noisy fake backend."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.decide.judgment import memory_guard
from autotune.errors import NothingFits
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params, ServedRound
from autotune.profile.schema import ArtifactInfo
from autotune.record import TrialRecord
from autotune.search.confirm import (
    EARLIEST_STOP,
    Finalist,
    decide,
    load_figures,
    stop_reason,
)
from autotune.serve.traffic import Request
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.workload import Workload

REPEATS = 100
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
    assert confirmation is not None and EARLIEST_STOP <= confirmation.rounds <= 5 and confirmation.max_rounds == 5
    assert confirmation.notes[0].startswith(f"confirmation: {confirmation.rounds} of at most 5 rounds"
                                            if confirmation.rounds < 5 else "confirmation: all 5 rounds ran")
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
    rounds = first.profile.confirmation.rounds  # type: ignore[attr-defined]
    assert not any(m.startswith("reusing the") for m in first_reporter.messages)
    assert any(m.startswith(f"reusing the {rounds} confirmation rounds") for m in reporter.messages)
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


# Sequential rounds: the stop rule on synthetic rounds.

def sequential(finalists: list[Finalist], base: Finalist, most: int = 5, thumb: Finalist | None = None,
               strict: bool = False) -> int:
    """The rounds the stage would run: the first round after which ``stop_reason`` stops, else ``most``."""
    full = {id(f): (f.decode_tps, f.itl_p95_ms) for f in [*finalists, base, *([thumb] if thumb else [])]}

    def cut(f: Finalist, done: int) -> Finalist:
        tps, p95 = full[id(f)]
        f.decode_tps, f.itl_p95_ms = tps[:done], p95[:done]
        return f

    for done in range(1, most + 1):
        for f in [*finalists, base, *([thumb] if thumb else [])]:
            cut(f, done)
        if stop_reason(finalists, base, BUDGET, strict, done, most, thumb) is not None:
            return done
    return most


def test_a_tie_that_no_remaining_round_can_break_stops_the_rounds_early() -> None:
    a = finalist("#1", [100, 103, 98, 101, 99], [20] * 5, bits=4.5)
    b = finalist("#2", [101, 99, 100, 102, 98], [20] * 5, bits=8.5)  # each won a round of the first three
    base = finalist("untuned", [60] * 5, [30] * 5)
    assert sequential([a, b], base) == 3
    why = stop_reason([a, b], base, BUDGET, False, 3, 5)
    assert why is not None and "tie whatever the remaining rounds" in why
    record, confirmation, notes = decide([a, b], base, BUDGET, False, 3, stopped=f"3 of at most 5 rounds: {why}",
                                         max_rounds=5)
    # The same decision five rounds give: a tie, broken by quality.
    assert record is b.record and confirmation.verdict == "tie" and confirmation.rounds == 3
    assert confirmation.max_rounds == 5 and notes[0].startswith("confirmation: 3 of at most 5 rounds")


def test_a_win_stops_early_only_beyond_the_noise_in_every_round() -> None:
    base = finalist("untuned", [60] * 5, [30] * 5)
    clear = [finalist("#1", [120, 121, 119, 122, 120], [20] * 5), finalist("#2", [100] * 5, [22] * 5)]
    assert sequential(clear, base) == EARLIEST_STOP  # 20% in every round
    close = [finalist("#1", [105, 106, 104, 105, 106], [20] * 5), finalist("#2", [100] * 5, [22] * 5)]
    assert sequential(close, base) == 5, "a 5% win needs every round: three unanimous rounds happen by chance"
    record, confirmation, _ = decide(close, base, BUDGET, False, 5)
    assert confirmation.verdict == "winner" and record is close[0].record


def test_a_latency_near_the_budget_gets_every_round() -> None:
    base = finalist("untuned", [60] * 5, [30] * 5)
    near = finalist("#1", [100] * 5, [46, 47, 45, 46, 47])  # within 50 ms, but not by 10%
    clear = finalist("#1", [100] * 5, [30, 31, 29, 30, 31])
    assert sequential([near], base) == 5
    assert sequential([clear], base) == EARLIEST_STOP


def test_the_rule_of_thumb_keeps_the_rounds_going_until_its_verdict_is_settled() -> None:
    base = finalist("untuned", [60] * 5, [30] * 5)
    chosen = finalist("#1", [100, 100, 100, 100, 100], [20] * 5)
    unsettled = finalist("rule of thumb", [95, 96, 94, 101, 95], [20] * 5)  # 5% slower in 3 rounds: not beyond 10%
    assert sequential([chosen], base, thumb=unsettled) == 4  # round 4 splits them: a tie for good
    far = finalist("rule of thumb", [50, 52, 49, 51, 50], [40] * 5)
    assert sequential([chosen], base, thumb=far) == EARLIEST_STOP


def test_never_more_rounds_than_the_limit_and_never_fewer_than_three() -> None:
    base = finalist("untuned", [60] * 5, [30] * 5)
    one = finalist("#1", [100] * 5, [20] * 5)
    assert stop_reason([one], base, BUDGET, False, 2, 5) is None
    assert stop_reason([one], base, BUDGET, False, 5, 5) is None  # the last round ends the rounds anyway
    assert stop_reason([one], base, BUDGET, False, 3, 5) is not None


def test_sequential_rounds_crown_few_more_wrong_winners_than_five_fixed_rounds() -> None:
    # Looking after every round gives chance more occasions; the stricter early effect must take them back. The
    # noise of test_stats: the machine scales a round's configurations alike (±10%), each run adds its own 5%.
    rng = random.Random(11)
    wrong_fixed = wrong_sequential = early = 0
    for _ in range(REPEATS):
        machine = [rng.uniform(0.9, 1.1) for _ in range(5)]
        a, b = (finalist(label, [100 * m * rng.gauss(1, 0.05) for m in machine], [20] * 5) for label in ("#1", "#2"))
        base = finalist("untuned", [60 * m for m in machine], [30] * 5)
        full = (list(a.decode_tps), list(b.decode_tps))
        wrong_fixed += decide([a, b], base, BUDGET, False, 5)[1].verdict == "winner"  # a and b are equal
        done = sequential([a, b], base)
        early += done < 5
        wrong_sequential += decide([a, b], base, BUDGET, False, done)[1].verdict == "winner"
        assert (a.decode_tps, b.decode_tps) == (full[0][:done], full[1][:done])
    assert early > REPEATS // 2, "ties between equal configurations mostly settle before the fifth round"
    assert wrong_sequential - wrong_fixed <= REPEATS // 100, (wrong_sequential, wrong_fixed)


def test_under_load_the_busy_figures_are_judged() -> None:
    a = finalist("#1", [100] * 5, [20] * 5)
    a.busy_decode_tps, a.busy_itl_p95_ms = [20] * 5, [900] * 5
    view = a.under_load()
    assert view.decode_tps == [20] * 5 and view.busy_decode_tps == [100] * 5 and view.record is a.record
    base = finalist("untuned", [60] * 5, [30] * 5)
    with pytest.raises(NothingFits, match="50 ms budget"):
        decide([view], base.under_load(), BUDGET, False, 5)


def test_a_configuration_that_collapses_under_load_is_never_shown_without_a_warning() -> None:
    chosen = finalist("#1", [70] * 3, [20] * 3)
    chosen.busy_decode_tps, chosen.busy_itl_p95_ms = [4.8], [1700.0]  # -t 2 with one core busy, as measured
    thumb = finalist("rule of thumb", [45] * 3, [25] * 3)
    thumb.busy_decode_tps, thumb.busy_itl_p95_ms = [20.0], [30.0]  # kept less than half its speed
    base = finalist("untuned", [45] * 3, [25] * 3)
    figures, warnings = load_figures([chosen, thumb, base], chosen.record, thumb, base, BUDGET, "1 core busy (core 1)")
    assert [f.collapses for f in figures] == [True, True, False]
    assert figures[0].chosen and figures[0].busy_rounds == 1 and figures[2].busy_decode_tps is None
    assert warnings == ["the chosen configuration #1 collapses with 1 core busy (core 1): 4.8 tok/s against 70.0 quiet "
                        "(7%); p95 1700.0 ms over the 50 ms budget (--under-load chooses on figures measured with it)",
                        "the rule of thumb collapses with 1 core busy (core 1): 20.0 tok/s against 45.0 quiet (44%)"]


def test_a_collapse_measured_on_loads_stopped_over_the_budget_says_so() -> None:
    chosen = finalist("#1", [40] * 3, [30] * 3)
    chosen.busy_decode_tps, chosen.busy_itl_p95_ms = [40.0] * 3, [32.0] * 3
    thumb = finalist("rule of thumb", [60] * 3, [25] * 3)
    thumb.busy_decode_tps, thumb.busy_itl_p95_ms, thumb.busy_stopped = [1.2, 0.9, 1.0], [1900.0, 2100.0, 2000.0], 3
    _, warnings = load_figures([chosen, thumb], chosen.record, thumb, thumb, BUDGET, "1 core busy (core 1)", True)
    assert warnings == ["the rule of thumb collapses with 1 core busy (core 1): 1.0 tok/s against 60.0 quiet (2%); "
                        "p95 2000.0 ms over the 50 ms budget; 3 of its 3 busy load(s) stopped once certain to be over "
                        "the budget, their figures from the requests so far"]


def measured_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collapses: Callable[[Params], bool],
                        calls: list[tuple[str, int | None, bool]] | None = None) -> Path:
    """The confirmation's measurements taken in-process (the fake's formulas), a configuration ``collapses`` says
    dropping to a tenth of its speed and a 2 s p95 while autotune's competing load runs; a fake model to tune.

    ``calls`` collects (params, depth, whether the load ran) of every measurement."""
    import psutil

    import autotune.search.confirm as confirm
    from autotune.measure.worker import WorkerResult

    def in_process(backend, artifact, params, workload, **kwargs):  # type: ignore[no-untyped-def]
        loaded = any("-S" in p.cmdline() for p in psutil.Process().children())
        if calls is not None:
            calls.append((str(params), workload.depth, loaded))
        measured = backend.measure(artifact, params, workload)
        if loaded and collapses(params):  # a thread per core waiting at every barrier for a descheduled peer
            measured = measured.model_copy(update={"decode_tps": measured.decode_tps / 10, "itl_p95_ms": 2000.0})
        return WorkerResult(ok=True, value=measured)

    monkeypatch.setattr(confirm, "measure", in_process)
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    return model


def test_the_stage_measures_the_answer_and_the_rule_of_thumb_under_load(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The rounds' measurements are taken in-process (the fake's formulas): what is checked is which configuration
    # is measured when, and that the competing load runs exactly during the busy measurements.
    calls: list[tuple[str, int | None, bool]] = []
    collapse = {"under load": False}
    model = measured_in_process(tmp_path, monkeypatch, lambda params: collapse["under load"], calls)
    workload = Workload(prompt_tokens=8, gen_tokens=4, context=64)

    def run(**settings: object) -> object:
        from autotune.probe.machine import probe_here

        calls.clear()
        options = TuneOptions(trials=1, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3, **settings)
        return Tuner(model, Budget.parse("400MB", "40ms"), workload, options,
                     manager=manager_with(FakeBackend(noise=0.05, measures_here=True)),
                     hardware=probe_here(measure_bandwidth=False), reporter=SilentReporter()).run().profile.confirmation

    default = run()
    assert default.busy_share == 1.0 and not default.under_load
    busy = [f for f in default.figures if f.busy_rounds]
    chosen = next(f for f in default.figures if f.chosen)
    assert chosen in busy and {f.label for f in busy} <= {chosen.label, "rule of thumb"}
    assert all(f.busy_rounds == 1 and f.rounds == default.rounds for f in busy)
    loaded_calls = [c for c in calls if c[2]]
    assert len(loaded_calls) == len(busy) and all(depth == 0 for _, depth, _ in loaded_calls), calls
    assert len(calls) == default.rounds * len(default.figures) + len(busy), "every other measurement was quiet"

    loaded = run(under_load=True)
    assert loaded.under_load and all(f.busy_rounds == f.rounds == loaded.rounds for f in loaded.figures)
    assert sum(c[2] for c in calls) == len(calls) // 2
    with pytest.raises(ValueError, match="under_load needs a competing load"):
        TuneOptions(under_load=True, busy_share=0)

    collapse["under load"] = True  # other load shares: rounds of their own, not the ones stored above
    warned = run(busy_share=0.5)
    assert all(f.collapses for f in warned.figures if f.busy_rounds) and any(f.chosen for f in warned.figures)
    assert warned.load_warnings[0].startswith("the chosen configuration #") and "--under-load chooses" in \
        warned.load_warnings[0]
    with pytest.raises(NothingFits, match=r"^with 0.5 of a core busy \(core \d+\) \(--under-load\): no finalist"):
        run(busy_share=0.5, under_load=True)


class ServingFake(FakeBackend):
    """A server backend without residence: each round is a fresh worker's measurement."""

    serves = True


def test_a_servers_busy_measurements_stop_once_over_the_budget_and_quiet_ones_run_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    import autotune.search.confirm as confirm
    from autotune.measure.worker import WorkerResult
    from autotune.probe.machine import probe_here

    bounds: list[tuple[float | None, bool]] = []

    def in_process(backend, artifact, params, workload, **kwargs):  # type: ignore[no-untyped-def]
        bounds.append((workload.stop_over_itl_ms, any("-S" in p.cmdline() for p in psutil.Process().children())))
        return WorkerResult(ok=True, value=backend.measure(artifact, params, workload))

    monkeypatch.setattr(confirm, "measure", in_process)
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    options = TuneOptions(trials=1, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3, under_load=True,
                          backends=("fake",))  # named: a server is left out of a single stream by default
    Tuner(model, Budget.parse("400MB", "40ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64), options,
          manager=manager_with(ServingFake(noise=0.05, measures_here=True)), hardware=probe_here(measure_bandwidth=False),
          reporter=SilentReporter()).run()
    assert bounds and {bound for bound, loaded in bounds if loaded} == {40.0}
    assert {bound for bound, loaded in bounds if not loaded} == {None}


class InTurnServingFake(ServingFake):
    """A server backend that keeps its servers running: each start and each load notes whether a competing load
    (a ``python -S`` child of the tuner) was running at that moment, and with what latency bound the load ran."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.starts: list[tuple[str, bool]] = []
        self.loads: list[tuple[str, float | None, bool]] = []

    def resident(self, artifact: Artifact, params: Params, workload: Workload) -> Any:
        import psutil

        def loaded() -> bool:
            return any("-S" in child.cmdline() for child in psutil.Process().children())

        @contextmanager
        def server() -> Iterator[ServedRound]:
            name = json.dumps(params, sort_keys=True)
            self.starts.append((name, loaded()))

            def load(requests: Sequence[Request], stop_over_itl_ms: float | None = None) -> Measurement:
                self.loads.append((name, stop_over_itl_ms, loaded()))
                return self.measure(artifact, params, workload)
            yield load

        return server()


def test_servers_that_fit_only_one_at_a_time_are_started_before_the_competing_load_once_a_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 19's 4-client tune under a busy core: five deployments of 2.4 GiB together did not fit a 1.9 GiB budget,
    # so every round started each of them twice, once under the competing load, where a server that collapses
    # spent 12 s on its warm-up. Run in turn, a deployment starts once a round, quietly, and serves both loads.
    from autotune.probe.machine import probe_here

    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    backend = InTurnServingFake(noise=0.05, measures_here=True)
    options = TuneOptions(trials=3, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3, under_load=True,
                          backends=("fake",))
    reporter = SilentReporter()
    Tuner(model, Budget.parse("400MB", "40ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64), options,
          manager=manager_with(backend), hardware=probe_here(measure_bandwidth=False), reporter=reporter).run()
    assert any("started and warmed up before its loads" in m for m in reporter.messages)
    names = {name for name, _ in backend.starts}
    assert len(names) >= 2 and not any(loaded for _, loaded in backend.starts)  # every start on a quiet machine
    rounds = len(backend.loads) // (2 * len(names))
    for name in names:  # each round: a quiet load, then one under the competing load, stopped over the budget
        assert [(bound, loaded) for n, bound, loaded in backend.loads if n == name] == [(None, False), (40.0, True)] * rounds
        # at most once a round (the last of a round, first of the next in the rotating order, is not restarted)
        assert 1 <= sum(1 for n, _ in backend.starts if n == name) <= rounds


def test_the_report_page_shows_a_collapse_under_load_as_a_warning() -> None:
    from autotune.profile.schema import Interval
    from autotune.report.page import _confirmation

    confirmation = decide([finalist("#1", [70] * 3, [20] * 3)], finalist("untuned", [45] * 3, [25] * 3), BUDGET, False,
                          3)[1].model_copy(update={"load_warnings": ["the chosen configuration #1 collapses <busy>"],
                                                   "busy_share": 1.0})
    page = _confirmation(confirmation)
    assert "<strong>warning:</strong> the chosen configuration #1 collapses &lt;busy&gt;" in page
    assert isinstance(confirmation.decode_tps, Interval)


class ThreadedFake(FakeBackend):
    """The fake with a thread setting ``for_cores`` can cap, as the llama.cpp backends have."""

    def for_cores(self, params: dict[str, object], cores: int) -> dict[str, object]:
        return {**params, "threads": min(int(str(params["threads"])), cores)}


def test_under_load_the_best_configuration_on_the_free_cores_competes_and_can_win(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 19's finding: with a core busy, every-core threads collapse while one thread fewer holds up. Quietly
    # the fewer-threads configuration is too slow to be a challenger; under --under-load it is measured (the search
    # starts from each starting point on the free cores too) and confirmed beside the winner, and it wins.
    from autotune.probe.machine import probe_here

    hardware = probe_here(measure_bandwidth=False)
    cores = max(2, hardware.cpu.usable_cores)
    free = max(1, hardware.cpu.usable_cores - 1)
    model = measured_in_process(tmp_path, monkeypatch, lambda params: params["threads"] > free)
    options = TuneOptions(trials=2, timeout_s=30, measure_quality=False, confirm_rounds=5, seed=3, under_load=True)
    result = Tuner(model, Budget.parse("400MB", "40ms"), Workload(prompt_tokens=8, gen_tokens=4, context=64), options,
                   manager=manager_with(ThreadedFake(max_threads=cores, base_ms=10, measures_here=True)),
                   hardware=hardware, reporter=SilentReporter()).run()
    assert result.profile.params["threads"] <= free
    chosen = next(f for f in result.profile.confirmation.figures if f.chosen)
    assert not chosen.collapses and chosen.busy_rounds == chosen.rounds
