"""The conformance suite every backend's tests subclass (the optuna ``pytest_samplers`` pattern).

A backend plugin's test module does::

    from autotune.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            return MyBackend()

        @pytest.fixture
        def model_path(self, tmp_path):
            return make_tiny_model(tmp_path)

and inherits every test below. Override ``params`` to pick the configuration measured.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from autotune.hardware import CacheLevel, CpuInfo, Hardware, MemoryInfo
from autotune.measure.artifacts import prepare_artifact
from autotune.measure.selftest import run_self_test
from autotune.measure.trial import measure
from autotune.measurement import Measurement
from autotune.model.source import ModelSource
from autotune.plugins.backend import (
    Artifact,
    Availability,
    Backend,
    Categorical,
    IntRange,
    Params,
    Prediction,
    SearchSpace,
)
from autotune.probe.machine import probe_here
from autotune.testing.runs_here import skip_unless_runs_here
from autotune.workload import Workload


def example_hardware(cores: int = 2, memory_gib: int = 24) -> Hardware:
    """A fixed, machine-independent Hardware for tests (shaped like the 2-core EPYC fixture)."""
    return Hardware(
        cpu=CpuInfo(architecture="x86_64", vendor="AuthenticAMD", brand="AMD EPYC",
                    features=["avx", "avx2", "avx512f", "avx512_vnni", "f16c", "fma", "sse4_2"],
                    physical_cores=cores, logical_cores=cores, usable_cores=cores,
                    caches=[CacheLevel(level=2, type="Unified", size_bytes=2**20)]),
        memory=MemoryInfo(total_bytes=memory_gib * 2**30, available_bytes=memory_gib * 2**30,
                          limit_bytes=memory_gib * 2**30, bandwidth_bytes_per_s=20e9),
    )


def _in_space(params: Params, space: SearchSpace) -> bool:
    for name, dimension in space.items():
        value = params.get(name)
        if isinstance(dimension, Categorical) and value not in dimension.choices:
            return False
        if isinstance(dimension, IntRange) and not (dimension.low <= value <= dimension.high):  # type: ignore[operator]
            return False
    return True


def search_configurations(backend: Backend, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
    """Every kind of configuration the search hands out: the starting points, the untuned one, their canonical
    forms, and the first starting point with each dimension set to each of its choices (or range bounds)."""
    starts = backend.starting_points(source, hardware, workload)
    configurations = [*starts, backend.untuned_params(source, hardware, workload)]
    for name, dimension in backend.search_space(source, hardware, workload).items():
        choices = dimension.choices if isinstance(dimension, Categorical) else (dimension.low, dimension.high)
        configurations += [{**starts[0], name: choice} for choice in choices]
    return configurations + [backend.canonical_params(p) for p in configurations]


MAX_SPACE_CONFIGURATIONS = 4096
"""Spaces up to this size are checked whole; larger ones through ``search_configurations``."""


def space_configurations(space: SearchSpace) -> list[Params] | None:
    """Every configuration ``space`` can produce, or None when there are more than ``MAX_SPACE_CONFIGURATIONS``."""
    names = list(space)
    values = [d.choices if isinstance(d, Categorical) else tuple(range(d.low, d.high + 1, d.step))
              for d in space.values()]
    if math.prod(len(v) for v in values) > MAX_SPACE_CONFIGURATIONS:
        return None
    return [dict(zip(names, combination, strict=True)) for combination in itertools.product(*values)]


def assert_plugin_boundary(backend: Backend, source: ModelSource, hardware: Hardware, workload: Workload) -> None:
    """What the tuner checks at the plugin boundary (``autotune.plugins.boundary``), raised here as it would be
    there: each method returns the kind of value its hook promises; every starting point and the untuned
    configuration are configurations of the backend's own space; and every configuration the space can produce
    (the whole space when it is small) has a canonical spelling, which the backend's ``params_model`` accepts."""
    from autotune.plugins.boundary import checked, checked_params, checked_space, outside
    from autotune.profile.params import validate_params

    name = backend.name
    checked(backend.availability(), Availability, f"{name}.availability()")
    checked(backend.version(), (str, type(None)), f"{name}.version()")
    space = checked_space(backend.search_space(source, hardware, workload), f"{name}.search_space()")
    starts = checked(backend.starting_points(source, hardware, workload), list, f"{name}.starting_points()")
    assert starts, f"{name}.starting_points() is empty: the search has nowhere to begin"
    untuned = checked_params(backend.untuned_params(source, hardware, workload), f"{name}.untuned_params()")
    for params in [*starts, untuned]:
        why = outside(space, checked_params(params, f"{name}.starting_points()"))
        assert why is None, f"{name}: the configuration {params} is not in its own search space: {why}"
    checked(backend.predict(source, starts[0], workload, hardware), Prediction, f"{name}.predict()")
    configurations = space_configurations(space) or search_configurations(backend, source, hardware, workload)
    for params in configurations:
        canonical = checked_params(backend.canonical_params(params), f"{name}.canonical_params()")
        checked(backend.describe(params), str, f"{name}.describe()")
        if backend.params_model is not None:
            for spelling in (params, canonical):
                validate_params(backend.params_model, spelling, name)  # ProfileError names the parameter


def assert_params_model_accepts(backend: Backend, configurations: list[Params]) -> None:
    """Each configuration passes ``backend.params_model``: a profile of any of them validates and exports."""
    from autotune.profile.params import validate_params

    assert backend.params_model is not None, f"backend {backend.name} declares no params_model"
    for params in configurations:
        validate_params(backend.params_model, params, backend.name)  # ProfileError names the parameter


class BackendConformance:
    """Behaviour every backend must show. Subclasses provide the ``backend`` and ``model_path`` fixtures."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("override the `backend` fixture")

    @pytest.fixture(autouse=True)
    def _runs_here(self, backend: Backend) -> None:
        """Every conformance test skips, saying why, where the runtime is missing or fails its self-test."""
        if backend.measures_this_machine:
            skip_unless_runs_here(backend)

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        raise NotImplementedError("override the `model_path` fixture with a small model in a source format")

    @pytest.fixture
    def hardware(self) -> Hardware:
        return example_hardware()

    @pytest.fixture
    def workload(self) -> Workload:
        return Workload(prompt_tokens=16, gen_tokens=8, context=128, runs=2, depth=0)

    @pytest.fixture
    def source(self, backend: Backend, model_path: Path) -> ModelSource:
        return backend.inspect(model_path)

    @pytest.fixture
    def params(self, backend: Backend, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        return backend.starting_points(source, hardware, workload)[0]

    @pytest.fixture
    def artifact(self, backend: Backend, source: ModelSource, params: Params, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Artifact:
        monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
        artifact, _ = prepare_artifact(backend, source, params)
        return artifact

    def test_identity(self, backend: Backend) -> None:
        assert backend.name and backend.name == backend.name.lower() and " " not in backend.name
        assert backend.source_formats

    def test_available(self, backend: Backend) -> None:
        availability = backend.availability()
        assert isinstance(availability, Availability)
        assert availability.available, availability.reason

    def test_self_test_passes_in_a_worker_and_is_cached(self, backend: Backend, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "selftest-cache"))
        hardware = probe_here(measure_bandwidth=False)
        result = run_self_test(backend, hardware)
        assert result.passed is not False, result.summary
        if result.passed:  # a backend without a self-test (None) is import-only: nothing to cache
            assert result.summary and not result.cached
            again = run_self_test(backend, hardware)
            assert again.cached and again.summary == result.summary

    def test_inspect(self, backend: Backend, source: ModelSource, model_path: Path) -> None:
        assert source.format in backend.source_formats
        assert len(source.sha256) == 64
        assert source.path == model_path

    def test_search_space_and_starting_points(self, backend: Backend, source: ModelSource, hardware: Hardware,
                                              workload: Workload) -> None:
        space = backend.search_space(source, hardware, workload)
        assert space and all(isinstance(d, (Categorical, IntRange)) for d in space.values())
        starts = backend.starting_points(source, hardware, workload)
        assert starts and all(_in_space(p, space) for p in starts)
        assert _in_space(backend.untuned_params(source, hardware, workload), space)
        assert set(backend.artifact_params) <= set(space)

    def test_params_model_accepts_what_the_search_produces(self, backend: Backend, source: ModelSource,
                                                           hardware: Hardware, workload: Workload) -> None:
        if backend.params_model is None:
            pytest.skip(f"backend {backend.name} declares no params_model: its profiles' params are not checked")
        assert_params_model_accepts(backend, search_configurations(backend, source, hardware, workload))

    def test_every_value_passes_the_plugin_boundary(self, backend: Backend, source: ModelSource, hardware: Hardware,
                                                    workload: Workload) -> None:
        assert_plugin_boundary(backend, source, hardware, workload)

    def test_predict(self, backend: Backend, source: ModelSource, params: Params, workload: Workload,
                     hardware: Hardware) -> None:
        prediction = backend.predict(source, params, workload, hardware)
        assert prediction.memory_bytes > 0

    def test_prepare_is_cached(self, backend: Backend, source: ModelSource, params: Params, artifact: Artifact) -> None:
        assert artifact.path.exists()
        assert artifact.bits_per_weight > 0 and artifact.size_bytes > 0
        again, built = prepare_artifact(backend, source, params)
        assert not built and again.path == artifact.path

    def test_measure_in_worker(self, backend: Backend, artifact: Artifact, params: Params, workload: Workload) -> None:
        result = measure(backend, artifact, params, workload, timeout_s=300, memory_limit_bytes=None)
        assert result.ok, result.error
        m = result.value
        assert isinstance(m, Measurement)
        # The spread check may have added one batch of runs (autotune.plugins.protocol).
        assert m.extra_runs in (0, workload.runs) and m.runs == workload.runs + m.extra_runs
        assert len(m.decode_tps_runs) == m.runs
        assert m.decode_tps > 0 and m.prefill_tps > 0 and m.ttft_ms > 0
        assert 0 < m.itl_p50_ms <= m.itl_p95_ms
        assert m.peak_rss_bytes and m.peak_rss_bytes > 0

    def test_logprobs_are_normalised(self, backend: Backend, source: ModelSource, artifact: Artifact,
                                     params: Params) -> None:
        tokens = backend.tokenize(source, "The quick brown fox jumps over the lazy dog. " * 3)
        chunks = list(backend.logprobs(artifact, params, tokens, chunk_tokens=16))
        assert chunks
        for chunk in chunks:
            assert chunk.ndim == 2 and np.isfinite(chunk).all()
            assert np.allclose(np.exp(chunk).sum(axis=1), 1.0, atol=1e-3)
        assert sum(len(c) for c in chunks) == sum(len(tokens[i:i + 16]) - 1 for i in range(0, len(tokens) - 1, 16)
                                                  if len(tokens[i:i + 16]) >= 2)
