"""A pytest plugin: the last lines of a test session say, in one line, which tests could not run here and why.

``make test`` (``pyproject.toml``'s ``addopts``) loads it, so a run that skipped the PostgreSQL tests (no
server binaries, no unprivileged user to run them as root, no driver) or a platform's tests says so at the
end instead of passing quietly with fewer tests than CI runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest


def not_run_line(skipped: Iterable[Any]) -> str | None:
    """``not run here: 9 tests (no PostgreSQL server here: …); 1 test (…)`` for skip reports, or None."""
    reasons: Counter[str] = Counter()
    for report in skipped:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[" ".join(str(reason).removeprefix("Skipped: ").split())] += 1
    if not reasons:
        return None
    return "not run here: " + "; ".join(f"{count} test{'s' if count > 1 else ''} ({reason})"
                                        for reason, count in reasons.most_common())


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Write the one line after pytest's own summary."""
    line = not_run_line(terminalreporter.stats.get("skipped", []))
    if line:
        terminalreporter.write_line(line, yellow=True)
