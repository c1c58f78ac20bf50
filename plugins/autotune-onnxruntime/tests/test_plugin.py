"""The plugin's hooks: conversion, hardware facts, exporters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import autotune_hf.plugin
from autotune import Measurement
from autotune.budget import Budget
from autotune.model.source import detect_format
from autotune.plugins.conversion import find_path
from autotune.plugins.manager import PluginManager
from autotune.profile.schema import ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted
from autotune.testing import prepare_artifact
from autotune.testing.conformance import example_hardware
from autotune.workload import Workload
from autotune_onnxruntime import OnnxRuntimeBackend, plugin, providers


@pytest.fixture
def manager() -> PluginManager:
    manager = PluginManager()
    manager.register(plugin, "onnxruntime")
    return manager


def test_conversion_writes_an_onnx_folder(fp32_onnx: Path) -> None:
    assert detect_format(fp32_onnx) == "onnx"
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json"} <= {p.name for p in fp32_onnx.iterdir()}
    decoder = json.loads((fp32_onnx / "genai_config.json").read_text())["model"]["decoder"]
    assert (decoder["num_hidden_layers"], decoder["num_key_value_heads"], decoder["head_size"]) == (2, 2, 32)


def test_gguf_reaches_onnx_through_hf(manager: PluginManager) -> None:
    manager.register(autotune_hf.plugin, "hf")
    chain = find_path(manager.conversions(), "gguf", ["onnx"])
    assert chain is not None and [c.name for c in chain] == ["gguf-to-hf", "hf-to-onnx"]


def test_backend_is_contributed(manager: PluginManager) -> None:
    assert isinstance(manager.backends()["onnxruntime"], OnnxRuntimeBackend)


def test_no_execution_provider_facts_on_a_cpu_only_machine(manager: PluginManager,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    providers.usable_providers.cache_clear()
    assert manager.hardware_facts() == []
    # A CUDA build without a usable GPU lists the provider but cannot create it: still nothing.
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"])
    providers.usable_providers.cache_clear()
    try:
        assert manager.hardware_facts() == []
    finally:
        providers.usable_providers.cache_clear()


def _profile(artifact_path: Path, params: dict[str, object]) -> DeploymentProfile:
    return DeploymentProfile(
        autotune_version="0.1.0", hardware={"fingerprint": "abc"},
        model=ModelInfo(path="/models/tiny", format="hf", sha256="0" * 64, architecture="llama", parameters=10),
        backend=BackendInfo(name="onnxruntime", version="0.18.0"), params=params,
        artifact=ArtifactInfo(path=str(artifact_path), format="onnx", precision="int4-b32-a4", bits_per_weight=8.4,
                              size_bytes=100),
        workload=Workload(prompt_tokens=16, gen_tokens=8, context=64), budget=Budget.parse("2GB", "50ms"),
        objective="speed",
        measured=Measurement(load_s=0.1, ttft_ms=1, itl_p50_ms=0.1, itl_p95_ms=0.2, decode_tps=9000, prefill_tps=9000,
                             runs=2, spread=0.01),
        predicted=Predicted(memory_bytes=10**8),
    )


def test_exporters_render_the_measured_settings(manager: PluginManager, tiny_hf: Path, shared_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))
    backend = OnnxRuntimeBackend()
    source = backend.inspect(tiny_hf)
    params = backend.starting_points(source, example_hardware(), Workload())[0]
    artifact, _ = prepare_artifact(backend, source, params)
    # A path that needs quoting: the snippet must still run.
    odd = shared_cache / "it's a model"
    if not odd.exists():
        odd.symlink_to(artifact.path, target_is_directory=True)
    profile = _profile(odd, params)
    exporters = manager.exporters()
    assert {"genai-config", "onnxruntime-python", "foundry-local"} <= set(exporters)
    assert exporters["genai-config"].applies_to("onnxruntime") and not exporters["genai-config"].applies_to("llamacpp")

    fragment = json.loads(exporters["genai-config"].render(profile))
    assert fragment == {"model": {"decoder": {"session_options": {
        "intra_op_num_threads": 2, "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL",
        "session.intra_op.allow_spinning": "1", "provider_options": []}}}, "search": {"max_length": 64}}

    snippet = exporters["onnxruntime-python"].render(profile)
    assert repr(str(odd)) in snippet
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()  # it generated text (random weights: any text)
