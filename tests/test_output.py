"""What commands print: into a closed pipe, as tables in a pipe, the advice after nothing fit, trial numbers, and
storage URLs that cannot be read."""

from __future__ import annotations

import io
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotune.budget import Budget
from autotune.cli.console import PIPE_WIDTH, output_console, results_table
from autotune.decide.judgment import nothing_fits_message, violations
from autotune.errors import StorageError
from autotune.measurement import Measurement
from autotune.record import TrialRecord
from autotune.search.trials import records, tell
from autotune.store.storage import storage_errors
from autotune.testing.profiles import sample_profile

LABEL = "Q4_K_M(Q5_0,Q8_0) t=2 b=512/512 fa=on kv=q8_0/q8_0 mmap=off ctx=2048"


def figures(peak_mb: float, p95_ms: float) -> Measurement:
    return Measurement(load_s=0, ttft_ms=5, itl_p50_ms=p95_ms, itl_p95_ms=p95_ms, decode_tps=1000 / p95_ms,
                       prefill_tps=1, peak_rss_bytes=int(peak_mb * 1e6), runs=1, spread=0)


def measured(number: int, peak_mb: float, p95_ms: float, label: str = LABEL) -> TrialRecord:
    return TrialRecord(number=number, status="measured", backend="llamacpp", params={"n": number}, label=label,
                       measurement=figures(peak_mb, p95_ms).model_dump())


def fits(m: Measurement, budget: Budget) -> bool:
    return all(v <= 0 for v in violations(m, budget, None).values())


# -- a reader that stops reading ---------------------------------------------------------------------------------

def test_export_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    # `autotune export p.json --format json | head -1`: head exits after one line. The pipe is closed here before
    # autotune writes at all, so the broken pipe happens every time (it was a traceback 2 times in 5).
    profile = tmp_path / "p.json"
    profile.write_text(sample_profile("llamacpp").to_json())
    code = "import sys; from autotune.cli.main import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", code, "export", str(profile), "--format", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err.decode() and "BrokenPipeError" not in err.decode(), err.decode()
    assert process.returncode == 141  # as a shell reports a command ended by SIGPIPE


# -- tables in a pipe --------------------------------------------------------------------------------------------

def test_tables_in_a_pipe_show_the_configuration_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe: not a terminal
    console = output_console(stderr=False)
    assert console.width == PIPE_WIDTH
    console.print(results_table([measured(3, 300, 20)], "front"))
    assert LABEL in sys.stdout.getvalue()  # type: ignore[attr-defined]


# -- the advice after nothing fit --------------------------------------------------------------------------------

def advised(message: str, budget: Budget) -> Budget:
    """The budget the advice in ``message`` asks for (the same where it names none)."""
    memory = re.search(r"--budget (\d+MB)", message)
    latency = re.search(r"--latency (\d+ms)", message)
    return Budget.parse(memory.group(1) if memory else f"{math.ceil(budget.memory_bytes / 1e6)}MB",
                        latency.group(1) if latency else f"{budget.latency_ms:g}ms")


def test_the_advised_budget_passes_the_figure_it_rests_on() -> None:
    # 355.2 MB measured against 300MB: 390.72 MB with the margin, advised as 391MB (rounded up, never down).
    message = nothing_fits_message([measured(1, 355.2, 20)], Budget.parse("300MB", "50ms"))
    assert "--budget 391MB" in message and "--latency" not in message  # latency was within its budget
    message = nothing_fits_message([measured(1, 355.5, 20)], Budget.parse("300MB", "50ms"))
    assert "--budget 392MB" in message  # 391.05: ".0f" said 391, which 355.5 MB x 1.1 does not fit


def test_advice_never_names_a_budget_already_met_and_always_passes() -> None:
    # The old advice took the smallest memory and the lowest latency of two different configurations, rounded
    # to the nearest: it could name a budget already met ("relax to at least 390MB" at --budget 391MB).
    rng = random.Random(7)
    for _ in range(300):
        budget = Budget.parse(f"{rng.randint(100, 900)}MB", f"{rng.randint(5, 80)}ms")
        rows = {i: figures(rng.uniform(50, 1500), rng.uniform(2, 200)) for i in range(rng.randint(1, 5))}
        rows = {i: m for i, m in rows.items() if not fits(m, budget)}
        if not rows:
            continue
        message = nothing_fits_message([measured(i, m.peak_rss_bytes / 1e6, m.itl_p95_ms)  # type: ignore[operator]
                                        for i, m in rows.items()], budget)
        relaxed = advised(message, budget)
        assert relaxed.memory_bytes > budget.memory_bytes or "--budget" not in message, message
        assert relaxed.latency_ms > budget.latency_ms or "--latency" not in message, message
        assert any(fits(m, relaxed) for m in rows.values()), message


# -- trial numbers ------------------------------------------------------------------------------------------------

def test_a_record_told_into_a_trial_another_worker_ended_keeps_the_number_the_table_shows() -> None:
    study = optuna.create_study(directions=["minimize"] * 3)
    trial = study.ask()
    trial.suggest_categorical("backend", ["llamacpp"])
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # the other worker that popped it ended it
    study.ask()  # and the study moved on: the record's own trial gets a later number
    record = measured(trial.number, 300, 20)
    tell(study, trial, record)
    assert [r.number for r in records(study) if r.key == record.key] == [record.number] != [trial.number]


# -- storage URLs -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:pw@h:abc/x", "host:port part"),
    ("postgresql://u:pw@[::1/x", "host:port part"),
    ("postgresql://u:pw@h:99999/x", "not a TCP port"),
])
def test_a_storage_url_with_a_bad_port_is_one_line_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(StorageError, match=re.escape(expected)) as caught, storage_errors(url):
        pass
    assert "pw" not in str(caught.value)
