"""The MLX exports used as a user would, on a real profile of the tiny model's 4-bit build (8-bit KV cache).

The Python snippet runs in a subprocess and must answer as ``autotune.load`` does; the ``mlx_lm.generate``
command runs in bash; the ``mlx_lm.server`` command is started in bash and answers a completion request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from autotune import DeploymentProfile, evidence_comment
from autotune.testing.exports import PROMPT, snippet_generates
from autotune_mlx import MlxBackend, render_generate, render_python, render_server

pytest.importorskip("mlx_lm", reason="mlx-lm is not installed: pip install 'slm-autotune-mlx[cpu]' (Linux) or [metal]")

BIN = str(Path(sys.executable).parent)
"""Where this environment's ``mlx_lm.generate`` and ``mlx_lm.server`` live: put first on PATH, as an activated venv."""


def _bash(text: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=180, env=env, check=False)


def test_python_export_starts_with_its_evidence_and_answers_as_autotune_load(q4_profile: DeploymentProfile,
                                                                            tmp_path: Path) -> None:
    text = render_python(q4_profile)
    assert text.startswith(evidence_comment(q4_profile))
    assert "'kv_bits': 8" in text and "'prefill_step_size': 512" in text
    script = tmp_path / "snippet.py"
    script.write_text(text)
    exported = snippet_generates(script)  # as pasted (its usage line answers), then its generate()
    assert exported and exported == MlxBackend().load_profile(q4_profile).generate(PROMPT, 8)


def test_generate_export_runs_in_bash(q4_profile: DeploymentProfile) -> None:
    text = render_generate(q4_profile)
    assert text.startswith(evidence_comment(q4_profile)) and "--kv-bits 8 --kv-group-size 32" in text
    done = _bash(text)
    assert done.returncode == 0, done.stderr[-2000:]
    generated = re.search(r"^Generation: (\d+) tokens", done.stdout, re.MULTILINE)
    assert generated and 1 <= int(generated.group(1)) <= q4_profile.workload.gen_tokens, done.stdout[-2000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        reply: dict[str, object] = json.loads(response.read())
    return reply


def test_server_export_serves_completions(q4_profile: DeploymentProfile) -> None:
    text = render_server(q4_profile)
    assert text.startswith(evidence_comment(q4_profile)) and "--port 8080" in text
    port = _free_port()  # the export's port may be taken here; nothing else changes
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(["bash", "-c", text.replace("--port 8080", f"--port {port}")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, "mlx_lm.server did not start"
                time.sleep(0.5)
        reply = _post(f"http://127.0.0.1:{port}/v1/completions",
                      {"prompt": PROMPT, "max_tokens": 4, "temperature": 0.0})
        usage = reply["usage"]
        assert isinstance(usage, dict) and 1 <= usage["completion_tokens"] <= 4, reply
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
