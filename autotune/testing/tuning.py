"""One call that tunes a model with inline plugins: the fake backends' end-to-end runs in tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.options import TuneOptions
from autotune.reporting import Reporter, SilentReporter
from autotune.search.assemble import TuneResult
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import manager_with
from autotune.tuner import Tuner
from autotune.workload import Workload

SMALL_WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, runs=3, depth=0)
"""A workload the fake backends answer in milliseconds."""


def tune_with_plugins(model: Path, *plugins: object, reporter: Reporter | None = None, budget: str = "300MB",
                      latency: str = "40ms", hardware: Hardware | None = None, workload: Workload = SMALL_WORKLOAD,
                      **options: Any) -> TuneResult:
    """Tune ``model`` with the built-ins plus ``plugins`` (registered in order) on a fixed example machine.

    ``options`` are ``TuneOptions`` fields; quality scoring and confirmation are off unless asked for.
    """
    manager = manager_with(builtins=True)
    for index, plugin in enumerate(plugins):
        manager.register(plugin, f"plugin{index}")
    settings: dict[str, Any] = {"trials": 3, "timeout_s": 60, "measure_quality": False, "confirm_rounds": 0, "seed": 1}
    settings.update(options)
    return Tuner(model, Budget.parse(budget, latency), workload, TuneOptions(**settings), manager=manager,
                 hardware=hardware or example_hardware(), reporter=reporter or SilentReporter()).run()
