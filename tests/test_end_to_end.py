"""`autotune run` on the real bundled default model (Gemma 3 270M) with the real llama.cpp backend.

Kept short (small context, two trials) so it runs in CI; the full run is `make run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.profile.reading import load_profile
from autotune.testing import skip_unless_runs_here

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llama.cpp backend is installed by `make test`")


@pytest.fixture(autouse=True, scope="module")
def llama_cpp_runs_here() -> None:
    from autotune_llamacpp.backend import LlamaCppBackend

    skip_unless_runs_here(LlamaCppBackend())

SHORT = ["--backend", "llamacpp", "--context", "512", "--prompt-tokens", "64", "--gen-tokens", "16",
         "--eval-tokens", "256", "--confirm-rounds", "0"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "AUTOTUNE_CACHE": str(cache)}


def autotune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autotune", *args], capture_output=True, text=True, env=env,
                          timeout=1200)


def test_run_writes_a_valid_profile_within_budget_and_resumes(env: dict[str, str], tmp_path: Path) -> None:
    args = ["run", "--budget", "2GB", "--latency", "500ms", "--trials", "2", *SHORT, "--out", str(tmp_path), "--json"]
    first = autotune(env, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    profile_files = list(tmp_path.glob("*.json"))
    assert len(profile_files) == 1 and list(tmp_path.glob("*.pareto.png"))
    profile = load_profile(profile_files[0])
    assert json.loads(first.stdout)["backend"]["name"] == "llamacpp"
    assert profile.model.architecture == "gemma3"
    assert profile.measured.peak_rss_bytes <= 2_000_000_000
    assert profile.measured.worst_itl_p95_ms <= 500 and profile.measured.decode_tps > 0
    assert profile.quality is not None and profile.quality.method == "kl-divergence"
    assert "llama-server" in profile.exports and "ollama" in profile.exports
    assert abs(profile.predicted.memory_error) < 0.5

    again = autotune(env, *args[:-1])  # the same command: the study resumes
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming study" in again.stderr and "2 finished trial(s) reused" in again.stderr


def test_impossible_budget_explains_itself(env: dict[str, str], tmp_path: Path) -> None:
    result = autotune(env, "run", "--budget", "100MB", "--latency", "50ms", "--trials", "2", *SHORT, "--out", str(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "No configuration met the budget" in result.stderr and "--budget" in result.stderr
