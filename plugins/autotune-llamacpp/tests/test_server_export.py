"""The llama-server export of a ``llamacpp-server`` profile is the measured command (``server_argv``: the same
binary, model file, flags and slots), and ``autotune verify`` starts it: checked with the real llama-server and
Gemma 3 270M (bundled) when the set-up built the server."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from autotune.profile.schema import DeploymentProfile
from autotune.testing.llama_server import llama_server_binary
from autotune.testing.profiles import sample_profile
from autotune_llamacpp.exporters import EXPORT_PORT, EXPORTERS, render_llama_server, served_command
from autotune_llamacpp.server_args import server_argv

PARAMS = {"quant": "Q4_K_M", "n_threads": 2, "n_parallel": 2, "flash_attn": True, "type_kv": "q8_0",
          "spec_type": "ngram-mod", "spec_ngram_size": 24, "cache_reuse": 256}


def server_profile(binary: str, model: str, params: dict[str, object] = PARAMS, clients: int = 2,
                   gen_tokens: int = 64) -> DeploymentProfile:
    """A ``llamacpp-server`` profile as a served tune writes it: measured with ``binary`` serving ``model``."""
    base = sample_profile("llamacpp")
    return base.model_copy(update={
        "backend": base.backend.model_copy(update={"name": "llamacpp-server"}),
        "params": dict(params),
        "artifact": base.artifact.model_copy(update={"path": model, "details": {}}),
        "workload": base.workload.model_copy(update={"concurrency": clients, "gen_tokens": gen_tokens}),
        "measured": base.measured.model_copy(update={"context": {"llama_server": binary}}),
    })


def test_the_export_is_the_measured_command() -> None:
    profile = server_profile("/opt/llama.cpp/build/bin/llama-server", "/models/my model's.gguf")
    measured = server_argv("/opt/llama.cpp/build/bin/llama-server", "/models/my model's.gguf", PARAMS,
                           profile.workload, EXPORT_PORT)
    text = render_llama_server(profile)
    command = [line for line in text.splitlines() if not line.startswith("#")]
    assert command == [shlex.join(measured)]
    assert shlex.split(command[0])[0] == "/opt/llama.cpp/build/bin/llama-server"
    assert "-np 2" in command[0] and "--spec-type ngram-mod" in command[0] and "--spec-ngram-mod-n-match 24" in command[0]
    assert served_command(profile, 4321) == server_argv("/opt/llama.cpp/build/bin/llama-server",
                                                         "/models/my model's.gguf", PARAMS, profile.workload, 4321)
    exporter = next(e for e in EXPORTERS if e.name == "llama-server")
    assert exporter.applies_to("llamacpp-server") and exporter.command is served_command
    # Other formats translate in-process settings; a server profile's params are not theirs.
    assert [e.name for e in EXPORTERS if e.applies_to("llamacpp-server")] == ["llama-server"]


def test_an_in_process_profile_keeps_its_export_and_has_no_measured_command() -> None:
    profile = sample_profile("llamacpp")
    assert served_command(profile, 8080) is None
    assert "-np 1 --cache-ram 0" in render_llama_server(profile)


@pytest.fixture(scope="module")
def binary() -> Path:
    try:
        return llama_server_binary()
    except LookupError as why:
        pytest.skip(f"no llama-server built here ({why}); make test builds it")


def test_verify_starts_the_exported_command_of_a_served_profile(binary: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Gemma 3 270M served to 2 clients with 2 slots; figures claimed loosely, so the verdict is about the
    plumbing (the measured command started, loaded, its figures and the speculation check reported)."""
    from autotune.cli.main import main
    from autotune.model.bundled import model_path
    from autotune.profile.schema import Confirmation, Interval

    params = {"quant": "Q4_K_M", "n_threads": 2, "n_parallel": 2, "spec_type": "ngram-mod"}
    profile = server_profile(str(binary), str(model_path("gemma3-270m")), params, clients=2, gen_tokens=16)
    profile = profile.model_copy(update={"measured": profile.measured.model_copy(
        update={"ttft_ms": 60_000.0, "peak_rss_bytes": 8 * 2**30}), "confirmation": Confirmation(
        rounds=3, decode_tps=Interval(value=20, low=1, high=500), itl_p95_ms=Interval(value=100, low=1, high=5000),
        verdict="single finalist")})
    path = tmp_path / "profile.json"
    path.write_text(profile.to_json())
    status = main(["verify", str(path), "--rounds", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    print(json.dumps(report, indent=2))
    figures = {f["name"]: f for f in report["figures"]}
    assert figures["throughput (all clients)"]["observed"] > 1
    assert figures["p95 time to first token"]["samples"] == 4
    assert report["speculation"]["requests"] == 3 and report["speculation"]["accepted"] > 0  # not vacuous
    assert status == (0 if report["speculation"]["exact"] else 1)
