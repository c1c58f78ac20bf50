"""Where the tuner reports progress: the CLI prints, tests and library callers collect."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.workload import Workload

if TYPE_CHECKING:  # only for annotations: the record imports the profile schema, which reporting never needs
    from autotune.record import TrialRecord


class Reporter(Protocol):
    """Receives the tuner's progress; the CLI's ``ConsoleReporter`` prints it."""

    def begin(self, model_path: Path, hardware: Hardware, budget: Budget, workload: Workload) -> None:
        """The run passed its preflight (the budget may have been capped at the machine) and starts."""

    def info(self, message: str) -> None:
        """A step worth telling (building, measuring, confirming)."""

    def warn(self, message: str) -> None:
        """Something the user should know (a backend skipped, a budget capped)."""

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        """A trial finished: ``index`` of ``total`` new measurements, and the best so far."""


class SilentReporter:
    """A reporter that keeps messages in lists (for tests and library use)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []
        self.trials: list[TrialRecord] = []

    def begin(self, model_path: Path, hardware: Hardware, budget: Budget, workload: Workload) -> None:
        self.messages.append(f"tuning {model_path.name} within {budget.describe()}")

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        self.trials.append(record)
