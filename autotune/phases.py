"""Where a run's time goes: seconds per phase, printed at the end and kept in the profile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Accumulates wall-clock seconds per named phase (self-tests, conversions, builds, measurements, ...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Add the time spent inside the block to ``phase`` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        """The phases with their seconds rounded to 0.1 s, for the profile."""
        return {phase: round(seconds, 1) for phase, seconds in self.seconds.items()}

    def describe(self) -> str:
        """One line, e.g. ``self-tests 2.1 s, builds 3.0 s, measurements 41.2 s``."""
        return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.seconds.items() if seconds >= 0.05)
