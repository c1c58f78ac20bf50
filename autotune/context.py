"""One run's context: the values every phase of a tuning run needs, decided once and passed as one object.

The tuner makes it at the start (``RunContext.open``): the budget is capped at what this machine lets a
process use there, and never changed or copied afterwards. Every phase (planning the backends, the
trial pipeline, the shared search, confirmation, assembling the profile) reads the same object, and
reports through its one ``reporter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autotune.budget import Budget
from autotune.decide.judgment import cap_at_machine
from autotune.hardware import Hardware
from autotune.options import TuneOptions
from autotune.phases import Phases
from autotune.plugins.manager import PluginManager
from autotune.reporting import Reporter
from autotune.workload import Workload


@dataclass(frozen=True)
class RunContext:
    """What one tuning run is about (model, budget, workload, options) and what it runs with (machine, plugins,
    reporter, phase clock). Frozen: a phase that needs another budget makes its own, it never edits this one."""

    model_path: Path
    budget: Budget
    """The user's budget, capped at the memory this machine lets a process use (``judgment.cap_at_machine``)."""
    workload: Workload
    options: TuneOptions
    hardware: Hardware
    manager: PluginManager
    reporter: Reporter
    phases: Phases
    """Wall-clock seconds per phase of this run (it accumulates; the object holding it does not change)."""

    @classmethod
    def open(cls, model_path: Path, budget: Budget, workload: Workload, options: TuneOptions, *,
             hardware: Hardware, manager: PluginManager, reporter: Reporter) -> RunContext:
        """The context of a run of ``model_path``: the budget decided here, once (a cap is warned about)."""
        capped, warning = cap_at_machine(budget, hardware)
        if warning:
            reporter.warn(warning)
        return cls(model_path, capped, workload, options, hardware, manager, reporter, Phases())
