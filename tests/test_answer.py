"""Answers from the store alone (``autotune answer``), the listing (``autotune store``) and storage errors in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from autotune import TuneOptions
from autotune.answer import answer_from_store, stored_models
from autotune.budget import Budget
from autotune.errors import NothingFits, StorageError
from autotune.search.study import open_storage
from autotune.store.measurements import MeasurementStore
from autotune.testing import FakeBackend
from autotune.testing.conformance import example_hardware
from autotune.testing.inline_plugin import InlineBackends, manager_with
from autotune.testing.tuning import SMALL_WORKLOAD, tune_with_plugins

OPTIONS = TuneOptions(measure_quality=False, objective="latency")


def test_the_answer_from_the_store_is_the_runs_pick_without_measuring(model: Path) -> None:
    ran = tune_with_plugins(model, InlineBackends(FakeBackend()), trials=6, objective="latency", screening=False)
    answer = answer_from_store(model, Budget.parse("300MB", "40ms"), SMALL_WORKLOAD, OPTIONS,
                               manager_with(FakeBackend()), example_hardware())
    assert answer.winner.key == ran.winner.key
    summary = answer.to_json()
    assert summary["measurements"] == 6 and summary["measured_now"] == 0 and not summary["confirmed"]
    assert summary["hosts"] == [socket.gethostname()] and summary["oldest_s"] >= summary["newest_s"] >= 0


def test_a_tighter_budget_is_answered_from_the_same_figures_or_refused_with_what_to_relax(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend()), trials=6, objective="latency", screening=False)
    tight = answer_from_store(model, Budget.parse("120MB", "40ms"), SMALL_WORKLOAD, OPTIONS,
                              manager_with(FakeBackend()), example_hardware())
    assert tight.winner.measurement is not None and tight.winner.measurement.peak_rss_bytes <= 120e6
    with pytest.raises(NothingFits, match="from 6 stored measurement"):
        answer_from_store(model, Budget.parse("10MB", "40ms"), SMALL_WORKLOAD, OPTIONS, manager_with(FakeBackend()),
                          example_hardware())


def test_nothing_stored_or_only_stale_figures_say_what_to_run(model: Path) -> None:
    budget = Budget.parse("300MB", "40ms")
    with pytest.raises(NothingFits, match="run `autotune run` with the same options first"):
        answer_from_store(model, budget, SMALL_WORKLOAD, OPTIONS, manager_with(FakeBackend()), example_hardware())
    tune_with_plugins(model, InlineBackends(FakeBackend(version="1.0")), trials=2)
    with pytest.raises(NothingFits, match="2 stored figure\\(s\\) are stale"):
        answer_from_store(model, budget, SMALL_WORKLOAD, OPTIONS, manager_with(FakeBackend(version="2.0")),
                          example_hardware())


def test_the_listing_shows_fastest_per_backend_front_and_stale(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend()), trials=4, screening=False)
    (listed,) = stored_models(None, {"fake": "1.0"})
    data = listed.to_json()
    assert data["measured"] == 4 and data["stale"] == 0 and data["runtimes"] == {"fake": ["1.0"]}
    fastest = max(r.measurement.decode_tps for r in listed.measured if r.measurement is not None)
    assert data["fastest_per_backend"]["fake"]["decode_tps"] == round(fastest, 2)
    assert 1 <= len(data["front"]) <= 4
    (upgraded,) = stored_models(None, {"fake": "2.0"})
    assert upgraded.stale == 4 and not upgraded.measured


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=300)


def test_cli_answer_and_store_on_an_empty_store_say_so_in_one_line(tmp_path: Path) -> None:
    answer = cli("answer", "--budget", "2GB", "--latency", "50ms", "--model", "smollm2-135m", "--no-quality")
    assert answer.returncode == 2 and "Traceback" not in answer.stderr
    assert answer.stderr.count("\n") == 1 and "run `autotune run` with the same options first" in answer.stderr
    listing = cli("store", "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
    assert "no measurements" in cli("store").stdout


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+nosuchdriver://u@127.0.0.1/db", "unknown database kind"),
    ("mysql+mysqldb://u@127.0.0.1/db", "the database driver 'MySQLdb' is not installed"),
    ("not a url", "cannot read --storage"),
])
def test_storage_errors_are_one_line(url: str, expected: str) -> None:
    with pytest.raises(StorageError, match=expected):
        open_storage(url)
    with pytest.raises(StorageError, match=expected):
        MeasurementStore(url)


def test_an_unreachable_server_and_the_cli_say_what_to_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{port}/tune"
    with pytest.raises(StorageError, match="check that the server runs") as error:
        MeasurementStore(url)
    assert "s3cret" not in str(error.value)
    result = cli("store", "--storage", url)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "s3cret" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database at all, but long enough to look like a header " * 4)
    for open_it in (open_storage, MeasurementStore):
        with pytest.raises(StorageError, match="cannot be used as a database \\(file is not a database\\)"):
            open_it(f"sqlite:///{garbage}")


def test_a_store_written_by_a_newer_autotune_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    MeasurementStore(url).close()
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("INSERT INTO autotune_store_schema (version) VALUES (99)"))
    with pytest.raises(StorageError, match="schema 99, written by a newer autotune"):
        MeasurementStore(url)


def test_permission_denied_on_postgresql_is_one_line(postgres_url: str) -> None:
    admin = sa.create_engine(postgres_url)
    role = f"reader_{postgres_url.rsplit('/', 1)[1]}"  # roles are server-wide; databases are per test
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        connection.execute(sa.text("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
    admin.dispose()
    url = postgres_url.replace(postgres_url.split("//")[1].split("@")[0], f"{role}:pw")
    with pytest.raises(StorageError, match="refused: .*the database user needs the right to create") as error:
        MeasurementStore(url)
    assert ":pw@" not in str(error.value)


class BrokenVersion(FakeBackend):
    """A third-party backend whose availability check raises."""

    def availability(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("broken plugin")


def test_a_plugin_whose_version_check_raises_costs_only_its_own_figures(model: Path) -> None:
    tune_with_plugins(model, InlineBackends(FakeBackend()), trials=3, objective="latency", screening=False)
    answer = answer_from_store(model, Budget.parse("300MB", "40ms"), SMALL_WORKLOAD, OPTIONS,
                               manager_with(FakeBackend(), BrokenVersion(name="broken")), example_hardware())
    assert answer.winner.backend == "fake" and len(answer.rests_on) == 3
    (listed,) = stored_models(None, {"fake": "1.0", "broken": "unknown (version check raised RuntimeError)"})
    assert len(listed.measured) == 3
