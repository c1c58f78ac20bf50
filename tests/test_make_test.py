"""`make test` runs what CI runs (the PostgreSQL tests included, as root or not), and names what it could not run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from autotune.testing.not_run import not_run_line

ROOT = Path(__file__).resolve().parents[1]


def recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, comments left out."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    found = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        if not line.strip().startswith("#"):
            found.append(line.strip())
    return found


def test_make_test_creates_the_postgres_user_before_pytest_and_ci_runs_only_make_test() -> None:
    # As root, postgres needs an unprivileged user; only .ci/run created it, so `make test` skipped every fleet test.
    commands = recipe("test")
    pytest_at = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert "scripts/postgres-user.sh" in commands[:pytest_at]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


def test_the_postgres_user_script_does_nothing_for_an_ordinary_user() -> None:
    if os.geteuid() == 0:
        return  # as root it creates the user: what `make test` relies on (tests/test_store.py then runs PostgreSQL)
    assert subprocess.run([str(ROOT / "scripts" / "postgres-user.sh")], capture_output=True).returncode == 0


def test_a_session_ends_naming_the_tests_it_could_not_run(tmp_path: Path) -> None:
    (tmp_path / "test_here.py").write_text(
        "import pytest\n"
        "def test_runs(): pass\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_needs_a_server(n): pytest.skip('no PostgreSQL server here: no initdb')\n"
        "@pytest.mark.skipif(True, reason='POSIX signals')\n"
        "def test_posix(): pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "autotune.testing.not_run", "-p", "no:cacheprovider",
                             str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("not run here:")]
    assert lines == ["not run here: 2 tests (no PostgreSQL server here: no initdb); 1 test (POSIX signals)"], result.stdout


def test_nothing_skipped_says_nothing() -> None:
    assert not_run_line([]) is None
