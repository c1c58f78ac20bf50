"""The replay backend reproduces the measured grids, and the tuner finds their best point."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune import SilentReporter, TuneOptions, Tuner
from autotune.budget import Budget
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.testing.replay_backend import ReplayBackend, load_grid
from autotune.workload import Workload

GRIDS = Path(__file__).parent / "fixtures" / "measurements"


def test_grid_index_matches_the_fixture() -> None:
    grid = load_grid(GRIDS / "xeon-16c-llamabench" / "grid_1b.json")
    assert {q for q, _ in grid} == {"Q8_0", "Q4_0"} and {t for _, t in grid} == {2, 4, 8, 16}
    # The fixture README: 1B Q4_0 decodes at about 152 tok/s on 16 threads, Q8_0 at about 82.
    assert grid[("Q4_0", 16)]["decode"]["avg_ts"] == pytest.approx(152, rel=0.05)
    assert grid[("Q8_0", 16)]["decode"]["avg_ts"] == pytest.approx(82, rel=0.05)


def test_tuner_finds_the_fastest_feasible_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    backend = ReplayBackend(GRIDS / "xeon-16c-llamabench" / "grid_125m.json")
    manager = manager_with(backend)
    budget = Budget.parse("200MB", "10ms")  # F16 (250 MB file) cannot fit
    options = TuneOptions(trials=20, timeout_s=30, measure_quality=False, confirm_rounds=0, objective="latency")
    workload = Workload(prompt_tokens=128, gen_tokens=64, context=512, depth=0)
    result = Tuner(model, budget, workload, options, manager=manager, hardware=example_hardware(cores=16),
                   reporter=SilentReporter()).run()
    feasible = {key: entry for key, entry in backend.grid.items() if entry["size"] + 60 * 2**20 <= budget.memory_bytes}
    best = max(feasible, key=lambda key: feasible[key]["decode"]["avg_ts"])
    chosen = result.profile.params
    assert chosen["quant"] != "F16"
    # Ranked by the decode samples replayed: within the best one's spread.
    assert result.profile.measured.decode_tps >= 0.95 * feasible[best]["decode"]["avg_ts"]
