"""The llamacpp-server backend: its command line, search space and predictions (fast), then llama-server for real.

The fast tests need no llama-server: they check the one place the command line is built (``server_argv``), the
canonical spellings, the space and what the confirmation compares against. The conformance suite and the tuning
test start the llama-server that ``make test`` builds (skipped, saying so, only where none is built).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from autotune.errors import ProfileError
from autotune.plugins.backend import Categorical
from autotune.plugins.boundary import outside
from autotune.testing import BackendConformance
from autotune.testing.conformance import example_hardware
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune.workload import Workload
from autotune_llamacpp.server_args import AUTO_SLOTS, canonical, server_argv
from autotune_llamacpp.server_backend import LlamaCppServerBackend, in_process_params, slot_choices
from autotune_llamacpp.server_binary import ENV, NoServerBinary, find_binary

WORKLOAD = Workload(prompt_tokens=16, gen_tokens=8, context=256, concurrency=4)
TAIL = ["--host", "127.0.0.1", "--port", "8080", "--no-webui"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def backend() -> LlamaCppServerBackend:
    return LlamaCppServerBackend()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)


def test_no_flag_is_llama_servers_own_default() -> None:
    argv = server_argv("/bin/llama-server", "/m.gguf", {"quant": "F16"}, WORKLOAD, 8080)
    # auto slots share one unified cache of AUTO_SLOTS contexts: each client still gets the workload's context
    assert argv == ["/bin/llama-server", "-m", "/m.gguf", "-c", str(256 * AUTO_SLOTS), *TAIL]


def test_every_parameter_has_its_flag() -> None:
    params = {"quant": "Q4_0", "n_threads": 1, "n_threads_batch": 2, "n_parallel": 3, "n_batch": 512, "n_ubatch": 128,
              "flash_attn": True, "type_kv": "q8_0", "spec_type": "ngram-mod", "spec_ngram_size": 12, "cache_reuse": 256}
    argv = server_argv(Path("/b/llama-server"), Path("/m.gguf"), params, WORKLOAD, 8080)
    assert argv == ["/b/llama-server", "-m", "/m.gguf", "-c", "768", "-t", "1", "-tb", "2", "-np", "3", "-b", "512",
                    "-ub", "128", "-fa", "on", "-ctk", "q8_0", "-ctv", "q8_0", "--spec-type", "ngram-mod",
                    "--spec-ngram-mod-n-match", "12", "--cache-reuse", "256", *TAIL]


def test_kv_rule_and_speculation_sizes_follow_the_kind() -> None:
    # A quantized V cache needs flash attention: off or auto keeps V at f16 (the in-process backend's rule).
    for flash in (False, None):
        argv = server_argv("s", "m", {"type_kv": "q4_0", "flash_attn": flash}, WORKLOAD, 1)
        assert argv[argv.index("-ctk") + 1] == "q4_0" and argv[argv.index("-ctv") + 1] == "f16"
    simple = server_argv("s", "m", {"spec_type": "ngram-simple", "spec_ngram_size": 8}, WORKLOAD, 1)
    assert simple[simple.index("--spec-type"):simple.index("--spec-type") + 4] == [
        "--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "8"]
    cache = server_argv("s", "m", {"spec_type": "ngram-cache", "spec_ngram_size": 8}, WORKLOAD, 1)
    assert "8" not in cache[cache.index("--spec-type"):-5]  # ngram-cache has no size flag
    assert "--cache-reuse" not in server_argv("s", "m", {"cache_reuse": 0}, WORKLOAD, 1)


@pytest.mark.parametrize(("params", "named"), [({"n_parallel": 0}, "n_parallel"), ({"slots": 2}, "slots"),
                                                ({"spec_type": "draft-simple"}, "spec_type"),
                                                ({"n_threads": 2.0}, "n_threads")])
def test_bad_params_name_the_parameter(params: dict[str, object], named: str) -> None:
    with pytest.raises(ProfileError, match=named):
        server_argv("s", "m", params, WORKLOAD, 1)


def test_canonical_spelling() -> None:
    assert canonical({"spec_type": "none", "spec_ngram_size": 24})["spec_ngram_size"] is None
    assert canonical({"spec_type": "ngram-mod", "spec_ngram_size": 24})["spec_ngram_size"] == 24
    assert canonical({"n_batch": 256, "n_ubatch": 512})["n_ubatch"] == 256


def test_slot_choices_reach_the_clients() -> None:
    assert slot_choices(1) == (None, 1)
    assert slot_choices(4) == (None, 1, 2, 4)
    assert slot_choices(6) == (None, 1, 2, 4, 6)


def test_space_and_baselines(backend: LlamaCppServerBackend, tiny: Path) -> None:
    source = backend.inspect(tiny)
    hardware = example_hardware(cores=2)
    space = backend.search_space(source, hardware, WORKLOAD)
    assert space["n_parallel"] == Categorical((None, 1, 2, 4))
    points = backend.starting_points(source, hardware, WORKLOAD)
    assert [(p["n_parallel"], p["n_threads"], p["n_threads_batch"], p["spec_type"]) for p in points[:4]] == [
        (4, 2, 2, "none"), (4, 1, 2, "none"), (1, 1, 1, "none"), (4, 2, 2, "ngram-mod")]
    single = backend.starting_points(source, hardware, WORKLOAD.model_copy(update={"concurrency": 1}))
    assert len(single) == len(points) - 1 and {p["n_parallel"] for p in single} == {1}  # one client: no slot fewer
    untuned = backend.untuned_params(source, hardware, WORKLOAD)
    thumb = backend.rule_of_thumb(source, hardware, WORKLOAD)
    for params in (*points, untuned, thumb):
        assert outside(space, params) is None, params
    assert untuned["n_parallel"] is None and untuned["flash_attn"] is None  # left to llama-server
    assert (thumb["n_parallel"], thumb["n_threads"]) == (1, 2)
    assert backend.describe(untuned) == "F16 np=auto t=2/2 b=2048/512 fa=auto kv=f16"
    assert backend.describe(points[3]).endswith("spec=ngram-mod:12")


def test_for_cores_caps_both_thread_counts_and_within_cores_tells_who_fits() -> None:
    from autotune.plugins.backend import within_cores

    backend = LlamaCppServerBackend()
    params = {"quant": "Q4_0", "n_parallel": 4, "n_threads": 2, "n_threads_batch": 2}
    assert backend.for_cores(params, 1) == {**params, "n_threads": 1, "n_threads_batch": 1}
    assert backend.for_cores({**params, "n_threads_batch": None}, 1)["n_threads_batch"] is None
    assert not within_cores(backend, params, 1) and within_cores(backend, params, 2)


def test_memory_grows_with_the_slots(backend: LlamaCppServerBackend, tiny: Path) -> None:
    source = backend.inspect(tiny)
    hardware = example_hardware()
    base = backend.starting_points(source, hardware, WORKLOAD)[0]
    one, four = (backend.predict(source, {**base, "n_parallel": n}, WORKLOAD, hardware) for n in (1, 4))
    assert four.breakdown["kv_cache"] == 4 * one.breakdown["kv_cache"] > 0
    assert four.memory_bytes > one.memory_bytes


def test_quality_uses_the_in_process_settings() -> None:
    assert in_process_params({"quant": "Q8_0", "n_threads": 2, "flash_attn": None, "n_ubatch": 4096}) == {
        "quant": "Q8_0", "n_threads": 2, "n_batch": 2048, "n_ubatch": 2048, "flash_attn": True, "type_kv": "f16"}


def test_a_named_binary_that_is_not_one_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               backend: LlamaCppServerBackend) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(NoServerBinary, match=ENV):
        find_binary()
    availability = backend.availability()
    if availability.version is not None:  # llama-cpp-python installed: the server is what is missing
        assert not availability.available and ENV in availability.reason


# -- llama-server for real ------------------------------------------------------------------------------------------


def _server_or_skip() -> Path:
    pytest.importorskip("llama_cpp", reason="the llama.cpp backends are installed by `make test`")
    try:
        return find_binary()
    except NoServerBinary as missing:
        pytest.skip(f"no llama-server built here ({missing})")


class TestLlamaCppServerConformance(BackendConformance):
    @pytest.fixture
    def backend(self) -> LlamaCppServerBackend:
        _server_or_skip()
        return LlamaCppServerBackend()

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        return make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)


def _servers_of(folder: Path) -> list[int]:
    """Pids of llama-server processes serving a model under ``folder`` (others' servers on this machine aside)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "llama-server" and any(str(folder) in arg for arg in process.info["cmdline"] or []):
            found.append(process.pid)
    return found


def _served_tune(tmp_path: Path, trials: int, confirm_rounds: int) -> tuple[str, dict[str, Any]]:
    """``autotune run --clients 2`` on a tiny model, as a user runs it: its console and its profile."""
    _server_or_skip()
    model = make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)
    env = {**os.environ, "AUTOTUNE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "autotune", "run", "--model", str(model), "--budget", "2GB", "--latency", "2s",
         "--clients", "2", "--trials", str(trials), "--context", "256", "--prompt-tokens", "32", "--gen-tokens", "8",
         "--eval-tokens", "256", "--confirm-rounds", str(confirm_rounds), "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr, json.loads(result.stdout)


@pytest.mark.slow
def test_tunes_a_served_workload_through_llama_server(tmp_path: Path) -> None:
    """``autotune run --clients 2`` on a tiny model: the server backend is chosen, measures two clients over HTTP,
    and leaves no server running."""
    console, profile = _served_tune(tmp_path, trials=3, confirm_rounds=0)
    assert "backend 'llamacpp' skipped" in console  # the in-process backend says why it cannot serve two
    assert profile["backend"]["name"] == "llamacpp-server"
    assert profile["workload"]["concurrency"] == 2
    served = profile["measured"]["served"]
    assert served["clients"] == 2 and served["requests"] >= 4 and served["itl_samples"] >= 4 * 7
    assert profile["params"]["n_parallel"] in (None, 1, 2)
    assert not _servers_of(tmp_path), "a llama-server outlived the run"


@pytest.mark.slow
def test_confirmation_rounds_keep_the_servers_running_and_load_them_in_turn(tmp_path: Path) -> None:
    """The rounds of a served tune start each finalist's llama-server once, load them in turn with the same
    requests each round, and stop them all: none outlives the run."""
    console, profile = _served_tune(tmp_path, trials=2, confirm_rounds=5)
    assert "servers kept running for the rounds" in console, console[-3000:]
    confirmation = profile["confirmation"]
    assert 3 <= confirmation["rounds"] <= 5
    assert all(f["rounds"] == confirmation["rounds"] for f in confirmation["figures"] if f["decode_tps"] is not None)
    assert not _servers_of(tmp_path), "a llama-server outlived the run"


@pytest.mark.slow
def test_a_measurement_bounded_over_its_latency_stops_after_one_load(tmp_path: Path) -> None:
    """A fresh worker's served measurement under a bound it is certain to miss (1 µs: every gap is over) stops
    its first load mid-stream, adds no other, and says so; the same workload unbounded runs every load out."""
    from autotune_llamacpp.server_measure import measure_server

    binary = _server_or_skip()
    model = make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)
    workload = Workload(prompt_tokens=16, gen_tokens=64, context=256, runs=2, concurrency=2)
    bounded = measure_server(binary, model, {"n_parallel": 2, "n_threads": 1}, workload.model_copy(
        update={"stop_over_itl_ms": 0.001}), log_dir=tmp_path)
    assert "inter-token gaps over 0.001 ms" in bounded.context["stopped"] and bounded.runs == 1
    assert bounded.served is not None and bounded.served.failed == 0 and 0 < sum(bounded.served.request_tokens) < 4 * 64
    full = measure_server(binary, model, {"n_parallel": 2, "n_threads": 1}, workload, log_dir=tmp_path)
    assert "stopped" not in full.context and full.runs >= 2 and full.served is not None
    assert full.served.requests == full.runs * 4 and all(t == 64 for t in full.served.request_tokens)
    assert workload.key() == Workload(prompt_tokens=16, gen_tokens=64, context=256, runs=2, concurrency=2).key()
    assert "stop_over_itl_ms" not in workload.key()
    assert workload.model_copy(update={"stop_over_itl_ms": 50.0}).key() != workload.key()  # figures never mix
