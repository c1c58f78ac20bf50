"""``autotune.load(profile)`` on a real llama.cpp model: the tuned ``Llama``, and the checks before it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import autotune
from autotune.deploy import ProfileMismatch
from autotune.errors import ProfileError
from autotune.model.source import cached_content_hash
from autotune.probe.machine import probe_here
from autotune.testing import skip_unless_runs_here
from autotune.testing.profiles import sample_profile
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune_llamacpp import LlamaCppBackend

pytest.importorskip("llama_cpp")


@pytest.fixture
def profile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A llama.cpp profile of a tiny model used as is, measured (as the profile says) on this machine."""
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    skip_unless_runs_here(LlamaCppBackend())
    model = make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256)
    sample = sample_profile("llamacpp")
    profile = sample.model_copy(update={
        "model": sample.model.model_copy(update={"path": str(model), "sha256": cached_content_hash(model)}),
        "artifact": sample.artifact.model_copy(update={"path": str(model), "details": {}}),
        "backend": sample.backend.model_copy(update={"version": LlamaCppBackend().version()}),
        "hardware": {**sample.hardware, "fingerprint": probe_here(measure_bandwidth=False).fingerprint},
        "workload": sample.workload.model_copy(update={"context": 256, "prompt_tokens": 16, "gen_tokens": 8}),
        "params": {**sample.params, "n_batch": 128, "n_ubatch": 128},
    })
    path = tmp_path / "profile.json"
    path.write_text(profile.to_json())
    return path


def test_load_returns_the_tuned_llama_that_decodes(profile_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileMismatch)  # same runtime, same machine: nothing to warn about
        llm = autotune.load(profile_file)
    assert llm.n_ctx() == 256 and llm.context_params.n_threads == 2 and llm.context_params.n_batch == 128
    tokens = llm.tokenize(b"The quick brown fox", add_bos=True)
    llm.eval(tokens)
    assert llm.n_tokens == len(tokens)


def test_a_changed_model_file_is_refused(profile_file: Path, tmp_path: Path) -> None:
    with (tmp_path / "tiny.gguf").open("ab") as model:
        model.write(b"\0")
    with pytest.raises(ProfileError, match="changed since it was measured"):
        autotune.load(profile_file)


def test_another_machine_warns_and_strict_refuses(profile_file: Path) -> None:
    text = profile_file.read_text()
    here = probe_here(measure_bandwidth=False).fingerprint
    profile_file.write_text(text.replace(here, "f" * 16))
    with pytest.warns(ProfileMismatch, match="measured on machine ffffffff"):
        autotune.load(profile_file)
    with pytest.raises(ProfileError, match="strict"):
        autotune.load(profile_file, strict=True)
