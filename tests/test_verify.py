"""``autotune verify``: a profile's figures checked again against its deployment.

The verdict logic on its own; then the command end to end on the scripted server (``autotune.testing.
scripted_server``: first token after 150 ms, then one every 40 ms, 5 tokens a request), deployed through an
exporter's ``command`` as a llama-server profile is: a profile whose claims the server meets holds (exit 0), one
claiming far better does not (exit 1, saying by how much), a changed prompts file is one line (exit 2), and a
kill -9 of verify leaves no server behind. The llama-server exporter of a ``llamacpp-server`` profile is the
measured command (``server_argv``), and verify runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from autotune.cli.main import main
from autotune.profile.schema import Interval
from autotune.serve.verify import Check, Claim, claims, judge
from autotune.testing.conformance import example_hardware
from autotune.testing.fake_backend import FakeBackend
from autotune.testing.inline_plugin import manager_with
from autotune.testing.profiles import sample_profile
from autotune.testing.scripted_server import ScriptedExporter, scripted_profile

MIB = 2**20


def _claim(higher: bool) -> Claim:
    return Claim("figure", "u", 100.0, 90.0, 110.0, higher, "confirmed in 5 rounds")


def test_a_figure_holds_inside_its_interval_or_better() -> None:
    faster = _claim(higher=True)
    assert Check(faster, 95.0).holds and Check(faster, 500.0).holds
    assert not Check(faster, 81.0).holds
    assert Check(faster, 81.0).shortfall == pytest.approx(0.1)
    slower = _claim(higher=False)
    assert Check(slower, 105.0).holds and Check(slower, 1.0).holds
    short = Check(slower, 132.0)
    assert not short.holds and short.shortfall == pytest.approx(0.2)
    assert "DOES NOT HOLD, 20% higher than the interval allows" in short.line()


def test_claims_take_confirmed_intervals_and_allow_slack_around_single_figures() -> None:
    profile = sample_profile("llamacpp")  # no confirmation: every figure is its search trial's
    found = {c.name: c for c in claims(profile, served=False)}
    speed = found["decode speed"]
    assert (speed.low, speed.high) == pytest.approx((99.0, 121.0)) and "search trial" in speed.basis
    assert found["peak memory"].value == pytest.approx(300_000_000 / MIB)
    served = scripted_profile(2, [], Interval(value=50, low=45, high=55), Interval(value=40, low=38, high=44), 150,
                              100 * MIB)
    found = {c.name: c for c in claims(served, served=True)}
    assert (found["throughput (all clients)"].low, found["p95 inter-token latency"].high) == (45, 44)
    checks = judge(list(found.values()), {"throughput (all clients)": (40.0, 60.0, 50.0)})
    assert len(checks) == 1 and checks[0].observed == 50.0 and checks[0].holds


def _hardware(tmp_path: Path) -> str:
    """A hardware description of a 2-core machine, so verify never probes the one the test runs on."""
    path = tmp_path / "hardware.json"
    path.write_text(example_hardware().model_dump_json())
    return str(path)


@pytest.fixture
def scripted_manager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201 - a plugin manager
    manager = manager_with(FakeBackend(), builtins=True)
    manager.register(ScriptedExporter(), "scripted")
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager", lambda **_: manager)
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", _hardware(tmp_path))
    return manager


def _write(profile, tmp_path: Path) -> Path:  # noqa: ANN001 - a DeploymentProfile
    path = tmp_path / "profile.json"
    path.write_text(profile.to_json())
    return path


def test_verify_says_a_met_profile_holds_and_a_promise_too_good_does_not(
        scripted_manager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    # The scripted server: 5 tokens in about 150 + 4 x 40 ms a request; 2 clients make about 30 tok/s.
    honest = scripted_profile(2, [], Interval(value=30, low=10, high=40), Interval(value=40, low=30, high=400), 160,
                              2000 * MIB)
    status = main(["verify", str(_write(honest, tmp_path)), "--rounds", "2", "--requests", "6", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    assert report["holds"] and report["speculation"] is None
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == {"throughput (all clients)", "p95 inter-token latency", "p95 time to first token",
                            "peak memory"}
    assert 30 <= figures["p95 inter-token latency"]["observed"] < 400
    assert figures["p95 time to first token"]["samples"] == 12  # every request of both rounds
    assert len(figures["throughput (all clients)"]["rounds"]) == 2

    boastful = scripted_profile(2, [], Interval(value=900, low=800, high=1000), Interval(value=4, low=3, high=5), 160,
                                2000 * MIB)
    status = main(["verify", str(_write(boastful, tmp_path)), "--rounds", "1", "--requests", "4"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "throughput (all clients)" in out and "DOES NOT HOLD" in out and "lower than the interval allows" in out
    assert "verdict: the profile does NOT hold" in out


def test_verify_checks_speculative_greedy_text_and_fails_when_it_changed(
        scripted_manager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    wide = (Interval(value=30, low=1, high=400), Interval(value=40, low=1, high=4000), 160, 2000 * MIB)
    exact = scripted_profile(1, ["--spec-type", "ngram-mod"], *wide)
    assert main(["verify", str(_write(exact, tmp_path)), "--rounds", "1", "--requests", "2"]) == 0
    assert "identical in 3 of 3 requests" in capsys.readouterr().out
    changed = scripted_profile(1, ["--spec-type", "ngram-mod", "--diverge"], *wide)
    assert main(["verify", str(_write(changed, tmp_path)), "--rounds", "1", "--requests", "2"]) == 1
    assert "differ in 3 of 3 requests" in capsys.readouterr().out


def test_verify_refuses_a_changed_prompts_file_in_one_line(
        scripted_manager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from autotune.serve.traffic import describe_prompts

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one prompt\n\nanother prompt\n\na third\n\na fourth\n")
    profile = scripted_profile(2, [], Interval(value=30, low=1, high=400), Interval(value=40, low=1, high=4000), 160,
                               2000 * MIB)
    profile = profile.model_copy(update={"workload": profile.workload.model_copy(
        update={"prompts": describe_prompts(prompts)})})
    path = _write(profile, tmp_path)
    assert main(["verify", str(path), "--rounds", "1", "--requests", "2"]) == 0
    assert "held-out prompts of" in capsys.readouterr().out
    prompts.write_text("something else entirely\n")
    assert main(["verify", str(path), "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autotune: error:") and "changed" in err and len(err.splitlines()) == 1
    prompts.unlink()
    assert main(["verify", str(path), "--rounds", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_verify_of_a_profile_whose_backend_is_not_here_is_one_line(
        scripted_manager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    profile = sample_profile("mlx")
    assert main(["verify", str(_write(profile, tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "'mlx' is not installed here" in err and len(err.strip().splitlines()) == 1
    assert main(["verify", str(tmp_path / "missing.json")]) == 2


KILLED_VERIFY = """
import sys
from pathlib import Path
from autotune.cli.main import main
from autotune.testing.fake_backend import FakeBackend
from autotune.testing.inline_plugin import manager_with
from autotune.testing.scripted_server import ScriptedExporter
import autotune.plugins.manager
manager = manager_with(FakeBackend(), builtins=True)
manager.register(ScriptedExporter(), "scripted")
autotune.plugins.manager.get_plugin_manager = lambda **_: manager
sys.exit(main(["verify", sys.argv[1], "--rounds", "1"]))
"""


def test_a_kill_9_of_verify_leaves_no_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    slow = scripted_profile(1, ["--gap-ms", "2000", "--chunks", "100", "--pid-file", str(pid_file)],
                            Interval(value=30, low=1, high=400), Interval(value=40, low=1, high=4000), 160, 2000 * MIB)
    profile = _write(slow, tmp_path)
    env = {**os.environ, "AUTOTUNE_HARDWARE_JSON": _hardware(tmp_path)}
    verify = subprocess.Popen([sys.executable, "-c", KILLED_VERIFY, str(profile)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert verify.poll() is None, "verify ended before its server started"
            assert time.monotonic() < deadline, "the scripted server never started"
            time.sleep(0.1)
        server = psutil.Process(int(pid_file.read_text()))
        time.sleep(1.0)  # the load is running: requests stream from the server
        verify.send_signal(signal.SIGKILL)
        verify.wait(timeout=10)
        try:
            server.wait(timeout=10)
        except psutil.TimeoutExpired:
            server.kill()
            pytest.fail("the server outlived the kill -9 of verify")
    finally:
        if verify.poll() is None:
            verify.kill()


def test_an_in_process_profile_is_measured_again_by_its_backend(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No served command for it: verify runs the backend's own measurement again in workers (the fake backend's
    figures are its formulas, so the profile made from one measurement holds and one claiming twice the speed
    does not)."""
    from autotune.plugins.backend import Artifact

    backend = FakeBackend()
    manager = manager_with(backend, builtins=True)  # no scripted exporter: nothing to serve
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager", lambda **_: manager)
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", _hardware(tmp_path))
    artifact = tmp_path / "model-q4_0.fake"
    artifact.write_text("{}")
    params = {"quant": "q4_0", "threads": 2}
    base = sample_profile("llamacpp")
    measured = backend.measure(Artifact(path=artifact, format="gguf", precision="q4_0", bits_per_weight=4.5,
                                        size_bytes=1), params, base.workload)
    measured.peak_rss_bytes = 2**30  # the worker's peak is the real Python's: claim a roomy one
    profile = base.model_copy(update={
        "backend": base.backend.model_copy(update={"name": "fake"}), "params": params,
        "artifact": base.artifact.model_copy(update={"path": str(artifact)}), "measured": measured})
    assert main(["verify", str(_write(profile, tmp_path)), "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "measured again in-process (fake), 2 rounds" in out and "decode speed" in out and "holds" in out
    boastful = profile.model_copy(update={"measured": measured.model_copy(
        update={"decode_tps": measured.decode_tps * 2})})
    assert main(["verify", str(_write(boastful, tmp_path)), "--rounds", "1"]) == 1
    assert "decode speed" in capsys.readouterr().out
    Path(profile.artifact.path).unlink()
    assert main(["verify", str(_write(profile, tmp_path))]) == 2
    assert "is gone" in capsys.readouterr().err
