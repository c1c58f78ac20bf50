"""The mlx parameter model: it accepts every configuration the search produces, and refuses by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autotune.errors import ProfileError
from autotune.model.source import ModelSource
from autotune.testing.conformance import assert_params_model_accepts, example_hardware, search_configurations
from autotune.testing.profiles import sample_profile
from autotune.workload import Workload
from autotune_mlx import EXPORTERS, MlxBackend
from autotune_mlx.backend import CPU_DTYPES, GPU_DTYPES
from autotune_mlx.params import mlx_params


@pytest.mark.parametrize("dtypes", [CPU_DTYPES, GPU_DTYPES])
def test_every_configuration_of_the_search_validates(monkeypatch: pytest.MonkeyPatch,
                                                     dtypes: tuple[str, ...]) -> None:
    monkeypatch.setattr(MlxBackend, "_dtypes", lambda self: dtypes)  # the CPU build or Metal, without MLX here
    source = ModelSource(path=Path("/models/tiny"), format="hf", sha256="0" * 64,
                         metadata={"config": {"head_dim": 64}})
    backend = MlxBackend()
    workload = Workload(prompt_tokens=1024, context=4096)  # long enough for the prefill step to be searched
    configurations = search_configurations(backend, source, example_hardware(), workload)
    assert {c.get("prefill_step_size") for c in configurations} >= {256, 2048}
    assert_params_model_accepts(backend, configurations)


def test_defaults_are_what_mlx_lm_assumes() -> None:
    params = mlx_params({})
    assert (params.bits, params.group_size, params.kv_bits, params.prefill_step_size) == (16, 64, 16, 2048)


@pytest.mark.parametrize("key, value, accepted", [
    ("bits", 5, "one of 16, 8, 4, 3"),
    ("bits", 4.0, "one of 16, 8, 4, 3"),
    ("kv_bits", "8", "one of 16, 8, 4"),
    ("group_size", 48, "one of 32, 64, 128 or null"),
    ("dtype", "fp16", 'one of "float16", "bfloat16", "float32"'),
    ("prefill_step_size", 0, "an integer from 1 to 1048576"),
    ("mixed", None, "true or false"),
])
def test_bad_values_are_refused_by_name_with_what_is_accepted(key: str, value: Any, accepted: str) -> None:
    with pytest.raises(ProfileError, match=f"the mlx parameter '{key}' must be {accepted}"):
        mlx_params({**sample_profile("mlx").params, key: value})


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: e.name)
def test_exporters_refuse_bad_params_instead_of_crashing(exporter: Any) -> None:
    profile = sample_profile("mlx")
    for key, value in (("kv_bits", "8; id"), ("prefill_step_size", 1e400), ("bits", [4])):
        bad = profile.model_copy(update={"params": {**profile.params, key: value}})
        with pytest.raises(ProfileError, match=f"'{key}'"):
            exporter.render(bad)
