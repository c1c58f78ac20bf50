"""The llama.cpp parameter model: it accepts every configuration the search produces, and refuses by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest

from autotune.errors import ProfileError
from autotune.hardware import Accelerator
from autotune.testing.conformance import assert_params_model_accepts, example_hardware, search_configurations
from autotune.testing.profiles import sample_profile
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune.workload import Workload
from autotune_llamacpp import EXPORTERS, LlamaCppBackend
from autotune_llamacpp.params import KvCacheType, LlamaCppParams, llamacpp_params
from autotune_llamacpp.runtime_params import GGML_TYPE_IDS, KV_BYTES_PER_VALUE, effective


@pytest.mark.parametrize("gpu", [False, True])
def test_every_configuration_of_the_search_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     gpu: bool) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    backend = LlamaCppBackend()
    source = backend.inspect(make_tiny_gguf(tmp_path / "tiny.gguf", hidden=256))
    hardware = example_hardware(cores=64)
    if gpu:  # n_gpu_layers only exists with a GPU
        hardware = hardware.model_copy(update={"accelerators": [Accelerator(kind="cuda", name="GPU 0")]})
    configurations = search_configurations(backend, source, hardware, Workload())
    assert any("n_gpu_layers" in c for c in configurations) == gpu
    assert_params_model_accepts(backend, configurations)


def test_every_kv_cache_type_has_a_size_and_a_ggml_type_id() -> None:
    assert set(get_args(KvCacheType)) == set(KV_BYTES_PER_VALUE) == set(GGML_TYPE_IDS)


def test_ggml_type_ids_are_llama_cpps() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    for name, type_id in GGML_TYPE_IDS.items():
        # llama-cpp-python 0.3.36 lacks GGML_TYPE_BF16; ggml.h: GGML_TYPE_BF16 = 30.
        assert getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", 30) == type_id, name


def test_defaults_are_llama_cpp_pythons() -> None:
    settings = effective(LlamaCppParams(quant="Q4_0", n_threads=3), 4096)
    assert (settings["n_batch"], settings["n_ubatch"], settings["flash_attn"]) == (512, 512, False)
    assert (settings["type_k"], settings["type_v"], settings["use_mmap"], settings["n_gpu_layers"]) == \
        ("f16", "f16", True, 0)
    assert settings["n_threads"] == 3 and effective({"quant": "Q4_0"}, 4096)["n_threads"] >= 1


@pytest.mark.parametrize("key, value, accepted", [
    ("n_threads", "2; touch x", "an integer from 1 to 4096 or null"),
    ("n_threads", 2.0, "an integer from 1 to 4096 or null"),
    ("n_threads", True, "an integer from 1 to 4096 or null"),
    ("n_threads", 0, "an integer from 1 to 4096 or null"),
    ("n_batch", "512", "an integer from 1 to 1048576"),
    ("n_batch", None, "an integer from 1 to 1048576"),
    ("flash_attn", 1, "true or false"),
    ("type_kv", "q8", 'one of "f16", "q8_0", "q4_0"'),
    ("quant", "Q4_0; rm", "a name matching"),
    ("n_gpu_layers", -1, "an integer from 0 to 65536"),
])
def test_bad_values_are_refused_by_name_with_what_is_accepted(key: str, value: Any, accepted: str) -> None:
    with pytest.raises(ProfileError, match=f"the llamacpp parameter '{key}' must be {accepted}") as error:
        llamacpp_params({**sample_profile("llamacpp").params, key: value})
    assert "\n" not in str(error.value)


def test_unknown_parameters_are_named() -> None:
    assert llamacpp_params({"n_threads": 2}).n_batch == 512  # runtime settings alone, as measure and logprobs get them
    with pytest.raises(ProfileError, match="has no parameter 'threads' .its parameters: quant, n_threads"):
        llamacpp_params({"quant": "Q4_0", "threads": 2})


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: e.name)
def test_exporters_refuse_bad_params_instead_of_crashing(exporter: Any) -> None:
    profile = sample_profile("llamacpp")
    for value in ("2; touch x", [1, 2], float("nan"), 1e400):
        bad = profile.model_copy(update={"params": {**profile.params, "n_threads": value}})
        with pytest.raises(ProfileError, match="'n_threads'"):
            exporter.render(bad)
