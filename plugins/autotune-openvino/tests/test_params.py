"""The openvino parameter model: it accepts every configuration the search produces, and refuses by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autotune.errors import ProfileError
from autotune.hardware import Accelerator
from autotune.model.source import ModelSource
from autotune.testing.conformance import assert_params_model_accepts, example_hardware, search_configurations
from autotune.testing.profiles import sample_profile
from autotune.workload import Workload
from autotune_openvino import OpenVINOBackend, compile_properties
from autotune_openvino.exporters import EXPORTERS
from autotune_openvino.params import openvino_params


@pytest.mark.parametrize("compressed", [False, True])
def test_every_configuration_of_the_search_validates(compressed: bool) -> None:
    hardware = example_hardware(cores=64)
    cpu = hardware.cpu.model_copy(update={"features": [*hardware.cpu.features, "avx512_bf16", "avx512_fp16"]})
    hardware = hardware.model_copy(update={"cpu": cpu, "accelerators": [
        Accelerator(kind="openvino", name="GPU.0"), Accelerator(kind="openvino", name="NPU")]})
    source = ModelSource(path=Path("/models/tiny-ir"), format="openvino", sha256="0" * 64, parameters=10**9,
                         metadata={"compressed": compressed})
    backend = OpenVINOBackend()
    configurations = search_configurations(backend, source, hardware, Workload())
    assert {c["device"] for c in configurations} == {"CPU", "GPU.0", "NPU"}
    assert_params_model_accepts(backend, configurations)


def test_properties_render_from_the_validated_params() -> None:
    params = openvino_params({"weight_format": "int8", "device": "GPU.0", "threads": 4})
    assert compile_properties(params) == {}  # threads only apply to the CPU; the hints were left unset
    assert compile_properties({**sample_profile("openvino").params}) == {
        "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
        "KV_CACHE_PRECISION": "u8"}


@pytest.mark.parametrize("key, value, accepted", [
    ("threads", "2; touch x", "an integer from 1 to 4096 or null"),
    ("threads", 0, "an integer from 1 to 4096 or null"),
    ("device", "CPU; rm -rf ~", "a name matching"),
    ("weight_format", "int3", 'one of "source", "fp16", "int8"'),
    ("performance_hint", "latency", 'one of "LATENCY", "THROUGHPUT" or null'),
    ("kv_cache_precision", 8, 'one of "u8", "f16", "f32" or null'),
])
def test_bad_values_are_refused_by_name_with_what_is_accepted(key: str, value: Any, accepted: str) -> None:
    with pytest.raises(ProfileError, match=f"the openvino parameter '{key}' must be {accepted}"):
        openvino_params({**sample_profile("openvino").params, key: value})


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: e.name)
def test_exporters_refuse_bad_params_instead_of_crashing(exporter: Any) -> None:
    profile = sample_profile("openvino")
    for key, value in (("threads", [1, 2]), ("device", None), ("inference_precision", "fp8")):
        bad = profile.model_copy(update={"params": {**profile.params, key: value}})
        with pytest.raises(ProfileError, match=f"'{key}'"):
            exporter.render(bad)
