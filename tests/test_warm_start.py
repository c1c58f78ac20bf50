"""The warm start: a new machine first measures what did best on the nearest stored machine of its ISA family."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from autotune import Budget, SilentReporter
from autotune.hardware import Hardware
from autotune.plugins.backend import Categorical, IntRange, Params, SearchSpace
from autotune.record import TrialRecord
from autotune.search.assemble import TuneResult
from autotune.store.measurements import MeasurementStore, Scope
from autotune.store.warm_start import device_summary, distance, fit_to_space, warm_starts
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import InlineBackends
from autotune.testing.machines import captured_hardware
from autotune.testing.tuning import tune_with_plugins

HARDWARE = Path(__file__).parent / "fixtures" / "hardware"


def first_measured(reporter: SilentReporter) -> TrialRecord:
    return next(record for record in reporter.trials if record.spent)


def fastest(result: TuneResult) -> list[Params]:
    """The configurations of ``result`` that decoded fastest within budget (more than one on a tie)."""
    feasible = [r for r in result.records if r.feasible and r.measurement is not None]
    top = max(r.measurement.decode_tps for r in feasible if r.measurement is not None)
    return [r.params for r in feasible if r.measurement is not None and r.measurement.decode_tps == top]


def scaled(params: Params, factor: int) -> Params:
    return {**params, "threads": params["threads"] * factor}


def arm(hardware: Hardware) -> Hardware:
    """``hardware`` as if it were an aarch64 machine (another ISA family), same cores."""
    return hardware.model_copy(update={"cpu": hardware.cpu.model_copy(update={"architecture": "aarch64"})})


def test_a_new_machine_of_the_family_measures_the_stored_best_first_and_another_isa_does_not(
        model: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    two, sixteen = example_hardware(cores=2), example_hardware(cores=16)
    first = tune_with_plugins(model, InlineBackends(FakeBackend(max_threads=2)), hardware=two, storage=storage,
                              trials=4, patience=0, objective="latency")
    best = fastest(first)
    assert all(p["quant"] != "f16" for p in best)  # not the new machine's own first point: only the store leads there

    warm = SilentReporter()
    tune_with_plugins(model, InlineBackends(FakeBackend(max_threads=16)), reporter=warm, hardware=sixteen,
                      storage=storage, trials=1, objective="latency")
    # Its share of the cores: all 2 of 2 there are all 16 of 16 here (clamping would have kept 2).
    assert first_measured(warm).params in [scaled(p, 8) for p in best]
    assert any(m.startswith("warm start: ") for m in warm.messages)

    cold = SilentReporter()
    tune_with_plugins(model, InlineBackends(FakeBackend(max_threads=16)), reporter=cold, hardware=arm(sixteen),
                      storage=storage, trials=1, objective="latency")
    assert first_measured(cold).params == {"quant": "f16", "threads": 16}  # the backend's own starting point
    assert not any(m.startswith("warm start") for m in cold.messages)


def test_the_warm_start_comes_from_the_nearest_machine_of_the_family(model: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    near, far, here = example_hardware(cores=8), example_hardware(cores=2), example_hardware(cores=16)
    assert distance(device_summary(here), device_summary(near)) < distance(device_summary(here), device_summary(far))
    runs: dict[int, list[Params]] = {}
    for machine, speed in ((far, {}), (near, {"q4_0": 9.0})):  # q4_0 made slow on the near machine: bests differ
        result = tune_with_plugins(model, InlineBackends(FakeBackend(max_threads=machine.cpu.usable_cores, speed=speed)),
                                   hardware=machine, storage=storage, trials=3, patience=0, objective="latency")
        runs[machine.cpu.usable_cores] = fastest(result)
    assert not {p["quant"] for p in runs[8]} & {p["quant"] for p in runs[2]}
    reporter = SilentReporter()
    tune_with_plugins(model, InlineBackends(FakeBackend(max_threads=16)), reporter=reporter, hardware=here,
                      storage=storage, trials=1, objective="latency")
    assert first_measured(reporter).params in [scaled(p, 2) for p in runs[8]]


def test_machines_of_another_isa_family_are_infinitely_far() -> None:
    xeon, epyc = captured_hardware(HARDWARE / "xeon-16c-h200"), captured_hardware(HARDWARE / "epyc-2c-kvm")
    amx_guest = captured_hardware(HARDWARE / "xeon-2c-amx-kvm")
    summaries = {hw.fingerprint: device_summary(hw) for hw in (xeon, epyc, amx_guest)}
    assert len(summaries) == 3  # three machines, three fingerprints
    for one in summaries.values():
        assert distance(one, one) == 0
        for other in summaries.values():
            assert distance(one, other) == distance(other, one)
        assert distance(one, device_summary(arm(xeon))) == math.inf
    # The 2-core EPYC guest is nearer the 2-core Xeon guest (same cores) than the 16-core Xeon host.
    assert distance(device_summary(epyc), device_summary(amx_guest)) < distance(device_summary(epyc), device_summary(xeon))


def test_no_warm_start_without_a_stored_machine_of_the_family(tmp_path: Path) -> None:
    store = MeasurementStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        scope = Scope("0" * 64, "tiny", example_hardware().fingerprint, {"workload": {}})
        assert warm_starts(store, scope, example_hardware(), {"fake": {"threads": IntRange(1, 2)}},
                           Budget.parse("1GB", "1s"), "latency") == {}
        assert example_hardware().fingerprint in store.devices()  # remembered for the next machine
    finally:
        store.close()


SPACE_2: SearchSpace = {"quant": Categorical(("f16", "q4_0")), "n_threads": IntRange(1, 2), "n_batch": IntRange(64, 512, step=64)}


@pytest.mark.parametrize(("threads", "cores", "expected"), [
    (16, (16, 2), 2),   # every core there: every core here
    (8, (16, 2), 1),    # half
    (4, (16, 2), 1),    # a quarter of two cores is less than one: at least one
    (12, (16, 2), 2),   # 1.5 rounds up
    (2, (2, 2), 2),
    (16, None, 2),      # no core counts: clamped into the range
    (2, (2, 16), 2),    # the range here stops at 2: clamped after scaling
])
def test_fit_to_space_keeps_the_share_of_cores(threads: int, cores: tuple[int, int] | None, expected: int) -> None:
    assert fit_to_space({"quant": "q4_0", "n_threads": threads, "n_batch": 512}, SPACE_2, cores) == \
        {"quant": "q4_0", "n_threads": expected, "n_batch": 512}


def test_fit_to_space_scales_up_and_picks_the_nearest_offered_count() -> None:
    sixteen: SearchSpace = {"n_threads": IntRange(1, 16)}
    assert fit_to_space({"n_threads": 2}, sixteen, (2, 16)) == {"n_threads": 16}
    assert fit_to_space({"n_threads": 1}, sixteen, (2, 16)) == {"n_threads": 8}
    grid: SearchSpace = {"n_threads": Categorical((1, 2, 4, 8, 16))}  # the replay backend offers the grid's counts
    assert fit_to_space({"n_threads": 2}, grid, (2, 16)) == {"n_threads": 16}
    assert fit_to_space({"n_threads": 3}, grid, (4, 8)) == {"n_threads": 8}  # 6: nearer 8 than 4 by ratio
    two: SearchSpace = {"n_threads": Categorical((1, 2))}
    assert fit_to_space({"n_threads": 16}, two, (16, 2)) == {"n_threads": 2}


def test_fit_to_space_leaves_other_parameters_alone_or_drops_the_configuration() -> None:
    space: SearchSpace = {"quant": Categorical(("q4_0",)), "n_batch": IntRange(64, 512, step=64), "use_mmap": Categorical((True,))}
    assert fit_to_space({"quant": "q4_0", "n_batch": 1000, "use_mmap": True}, space, (16, 2)) == \
        {"quant": "q4_0", "n_batch": 512, "use_mmap": True}  # not a thread count: clamped, never scaled
    assert fit_to_space({"quant": "q4_0", "n_batch": 100, "use_mmap": True}, space) == \
        {"quant": "q4_0", "n_batch": 64, "use_mmap": True}  # onto the step
    assert fit_to_space({"quant": "q8_0", "n_batch": 64, "use_mmap": True}, space) is None  # a type not offered here
    assert fit_to_space({"quant": "q4_0", "n_batch": 64}, space) is None  # a parameter missing
    assert fit_to_space({"quant": "q4_0", "n_batch": "64", "use_mmap": True}, space) is None  # not an integer
