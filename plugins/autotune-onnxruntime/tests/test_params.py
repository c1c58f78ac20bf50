"""The onnxruntime parameter model: it accepts every configuration the search produces, and refuses by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import autotune_onnxruntime.backend as backend_module
from autotune.errors import ProfileError
from autotune.hardware import Accelerator
from autotune.model.source import ModelSource
from autotune.testing.conformance import assert_params_model_accepts, example_hardware, search_configurations
from autotune.testing.profiles import sample_profile
from autotune.workload import Workload
from autotune_onnxruntime import OnnxRuntimeBackend
from autotune_onnxruntime.exporters import EXPORTERS
from autotune_onnxruntime.params import onnxruntime_params
from autotune_onnxruntime.session import genai_overlay, genai_provider


@pytest.mark.parametrize("gpu", [False, True])
def test_every_configuration_of_the_search_validates(monkeypatch: pytest.MonkeyPatch, gpu: bool) -> None:
    hardware = example_hardware(cores=64)
    if gpu:  # a usable CUDA provider adds fp16 and the cuda provider to the space
        monkeypatch.setattr(backend_module, "genai_can_use", lambda provider: True)
        hardware = hardware.model_copy(update={"accelerators": [
            Accelerator(kind="onnxruntime-ep", name="CUDAExecutionProvider")]})
    source = ModelSource(path=Path("/models/tiny"), format="hf", sha256="0" * 64)
    backend = OnnxRuntimeBackend()
    configurations = search_configurations(backend, source, hardware, Workload())
    assert any(c.get("execution_provider") == "cuda" for c in configurations) == gpu
    assert_params_model_accepts(backend, configurations)


def test_settings_render_from_the_validated_params() -> None:
    params = onnxruntime_params({**sample_profile("onnxruntime").params, "allow_spinning": False,
                                 "execution_provider": "dml"})
    options = genai_overlay(params)["model"]["decoder"]["session_options"]
    assert options["intra_op_num_threads"] == 2 and options["session.intra_op.allow_spinning"] == "0"
    assert genai_provider(params) == "DML"


@pytest.mark.parametrize("key, value, accepted", [
    ("intra_op_num_threads", "2; touch x", "an integer from 1 to 4096"),
    ("intra_op_num_threads", 2.5, "an integer from 1 to 4096"),
    ("block_size", 48, "one of 16, 32, 64, 128, 256 or null"),
    ("block_size", 32.0, "one of 16, 32, 64, 128, 256 or null"),
    ("accuracy_level", True, "one of 0, 1, 2, 3, 4 or null"),
    ("execution_provider", "CUDA", 'one of "cpu", "cuda"'),
    ("graph_optimization_level", None, 'one of "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"'),
    ("allow_spinning", "yes", "true or false"),
])
def test_bad_values_are_refused_by_name_with_what_is_accepted(key: str, value: Any, accepted: str) -> None:
    with pytest.raises(ProfileError, match=f"the onnxruntime parameter '{key}' must be {accepted}"):
        onnxruntime_params({**sample_profile("onnxruntime").params, key: value})


def test_missing_and_unknown_parameters_are_named() -> None:
    params = {k: v for k, v in sample_profile("onnxruntime").params.items() if k != "intra_op_num_threads"}
    with pytest.raises(ProfileError, match="'intra_op_num_threads' is missing; it must be an integer from 1 to 4096"):
        onnxruntime_params(params)
    with pytest.raises(ProfileError, match="the onnxruntime backend has no parameter 'threads' .its parameters: precision,"):
        onnxruntime_params({**sample_profile("onnxruntime").params, "threads": 2})


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: e.name)
def test_exporters_refuse_bad_params_instead_of_crashing(exporter: Any) -> None:
    profile = sample_profile("onnxruntime")
    for key, value in (("intra_op_num_threads", "2; touch x"), ("execution_provider", "tpu"), ("precision", None)):
        bad = profile.model_copy(update={"params": {**profile.params, key: value}})
        with pytest.raises(ProfileError, match=f"'{key}'"):
            exporter.render(bad)
