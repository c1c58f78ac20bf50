"""The command line as a user runs it: one-line errors, listings, exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.cli.main import main
from autotune.testing.conformance import example_hardware


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("budget, latency, expected", [
    ("2XB", "50ms", "unknown size unit"), ("-1GB", "50ms", "cannot read size"), ("fast", "50ms", "cannot read size"),
    ("2GB", "0ms", "must be greater than zero"), ("2GB", "fast", "cannot read duration"),
])
def test_bad_budgets_get_one_clear_line(budget: str, latency: str, expected: str) -> None:
    result = run_cli("run", "--budget", budget, "--latency", latency)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and ("2GB" in lines[0] or "50ms" in lines[0]), result.stderr


def test_workload_that_does_not_fit_the_context_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--budget", "2GB", "--latency", "50ms", "--prompt-tokens", "4000", "--context", "2048"])
    err = capsys.readouterr().err
    assert status == 2 and "exceed the context" in err and len(err.strip().splitlines()) == 1


def test_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text(example_hardware().model_dump_json())
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(hw))
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    status = main(["run", "--model", str(tmp_path / "nope.gguf"), "--budget", "2GB", "--latency", "50ms"])
    err = capsys.readouterr().err
    assert status == 2 and "model not found" in err


def test_help_explains_units_and_latency() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "GB = 10^9 bytes" in text and "GiB = 2^30" in text and "p95 inter-token latency" in text


def test_probe_json_has_the_documented_keys(tmp_path: Path) -> None:
    result = run_cli("probe", "--json", env={"AUTOTUNE_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    cpu, memory = data["cpu"], data["memory"]
    assert 1 <= cpu["usable_cores"] <= cpu["logical_cores"] and cpu["physical_cores"] <= cpu["logical_cores"]
    assert cpu["features"] == sorted(cpu["features"]) and all(c["size_bytes"] > 0 for c in cpu["caches"])
    assert 0 < memory["available_bytes"] <= memory["total_bytes"] and 0 < memory["limit_bytes"] <= memory["total_bytes"]
    assert memory["bandwidth_bytes_per_s"] > 1e8  # measured: at least 0.1 GB/s on any machine that runs this
    assert isinstance(data["accelerators"], list) and len(data["fingerprint"]) == 16


def test_plugins_lists_builtins_and_their_state() -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {p["name"] for p in data["plugins"]}
    assert {"builtin-cpu", "builtin-memory", "builtin-json_export"} <= names


def test_export_of_a_foreign_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    result = run_cli("export", str(path), "--format", "json")
    assert result.returncode == 2 and "not an autotune profile" in result.stderr and "Traceback" not in result.stderr


def test_schema_written_into_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "profile.schema.json"
    status = main(["schema", "--write", str(target)])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot write the schema" in err and "missing" in err and "Traceback" not in err
    assert main(["schema", "--write", str(tmp_path / "profile.schema.json")]) == 0
    assert json.loads((tmp_path / "profile.schema.json").read_text())["title"] == "DeploymentProfile"
