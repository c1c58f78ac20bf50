"""optuna-dashboard, started for real on a tuned study's storage, shows what autotune means it to show.

The server runs as a user starts it (``optuna-dashboard <storage URL>``) on a free local port; the test reads
the JSON API its web page reads (``/api/studies``, ``/api/studies/<id>``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest

from autotune.record import TrialRecord, config_key
from autotune.search.study import METRIC_NAMES
from autotune.search.trials import RECORD_ATTR, figures
from autotune.serve.server import free_port
from autotune.store.measurements import MeasurementStore
from autotune.testing import FakeBackend
from autotune.testing.inline_plugin import InlineBackends
from autotune.testing.tuning import tune_with_plugins

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (it is in the test extra: "
                                               "pip install -e '.[test]')")

FIGURES = ("decode tok/s", "p95 ms/token", "TTFT ms", "peak MiB")
MAX_ATTR_LENGTH = 1024
"""optuna-dashboard 0.21 cuts a user attribute that is not a string or a number to this many characters of JSON."""


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def serve(storage: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``optuna-dashboard <storage>`` on a free port of 127.0.0.1; return the process and its base URL."""
    script = Path(sys.executable).with_name("optuna-dashboard")
    command = [str(script)] if script.exists() else \
        [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; sys.exit(main())"]
    port = free_port()
    with log.open("wb") as output:
        server = subprocess.Popen([*command, storage, "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            get(f"{base}/api/meta")
            return server, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait()
                pytest.fail(f"optuna-dashboard did not answer on {base}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)


def shown(value: Any) -> str:
    """A user attribute as the dashboard's API gives it, uncut (its ``serialize_attrs`` without the cut)."""
    return value if isinstance(value, str) else str(value) if isinstance(value, int | float) else json.dumps(value)


def test_the_dashboard_shows_names_figures_and_constraints(model: Path, tmp_path: Path) -> None:
    named = tmp_path / "SmolLM2-135M.gguf"
    model.rename(named)
    storage = f"sqlite:///{tmp_path / 'studies.sqlite3'}"
    # 20 ms p95: f16 with few threads is measured over the latency budget, so both kinds of trial exist.
    backend = FakeBackend()
    tuned = tune_with_plugins(named, InlineBackends(backend), storage=storage, latency="20ms", trials=5, patience=0,
                              screening=False, objective="latency")
    # A second objective is a second study, seeded from the store (optuna's create_trial, not tell).
    seeded = tune_with_plugins(named, InlineBackends(backend), storage=storage, latency="20ms", trials=5, patience=0,
                               screening=False, objective="memory")
    assert seeded.new_measurements == 0
    store = MeasurementStore(storage)
    try:
        stored = {config_key(s.backend, s.record["params"]): TrialRecord.from_json(s.record) for s in store.everything()}
    finally:
        store.close()

    server, base = serve(storage, tmp_path / "dashboard.log")
    try:
        summaries = {s["study_name"]: s for s in get(f"{base}/api/studies")["study_summaries"]}
        assert set(summaries) == {tuned.study_name, seeded.study_name}
        for name, objective in ((tuned.study_name, "latency"), (seeded.study_name, "memory")):
            assert name.startswith("SmolLM2-135M · 0.3 GiB p95 20 ms · ") and f" · {objective} · fake · " in name
            detail = get(f"{base}/api/studies/{summaries[name]['study_id']}")
            by_number = {t.number: t for t in optuna.load_study(study_name=name, storage=storage).trials}
            assert detail["name"] == name
            assert detail["objective_names"] == list(METRIC_NAMES)
            measured = [t for t in detail["trials"] if t["state"] == "Complete"]
            assert len(measured) == 5
            over = 0
            for trial in measured:
                attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
                record = stored[config_key("fake", {k.split(".", 1)[1]: v for k, v in params(trial).items()
                                                     if k != "backend"})]
                expected = figures(record)
                for key in FIGURES:
                    assert key in expected
                for key, value in expected.items():  # each figure its own attribute, whole
                    assert attrs[key] == shown(value), key
                # Nothing is cut but the full record, one JSON attribute of well over 1024 characters: the
                # dashboard shows its start, which is why the figures above are attributes of their own.
                full = {k: shown(v) for k, v in by_number[trial["number"]].user_attrs.items()}
                assert set(attrs) == set(full) and len(full[RECORD_ATTR]) > MAX_ATTR_LENGTH
                for key, value in attrs.items():
                    assert value == (full[key][:MAX_ATTR_LENGTH] if key == RECORD_ATTR else full[key]), key
                # The budget constraints, in judgment.violations order (memory, latency): ≤ 0 within budget.
                assert trial["constraints"] == pytest.approx(list(record.violations.values()))
                assert len(trial["constraints"]) == 2
                assert {"memory", "latency"} <= set(by_number[trial["number"]].constraints)  # optuna 5's, by name
                over += any(c > 0 for c in trial["constraints"])
            assert 0 < over < len(measured)  # the dashboard greys out the trials over budget, and only those
    finally:
        server.terminate()
        server.wait(timeout=30)


def params(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters (``backend``, ``fake.quant``, ``fake.threads``) as the API gives them, typed back."""
    found = {p["name"]: p["param_external_value"] for p in trial["params"]}
    found |= {p["name"]: p["param_external_value"] for p in trial["fixed_params"] if p["name"] not in found}
    return {k: int(v) if v.isdigit() else v for k, v in found.items()}
