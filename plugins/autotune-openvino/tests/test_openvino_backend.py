"""The OpenVINO backend on a tiny generated llama: conversion, compression, conformance, exports, devices."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autotune import Accelerator, Budget, DeploymentProfile, Measurement, Workload, evidence, evidence_comment
from autotune.plugins.backend import Artifact
from autotune.plugins.manager import PluginManager
from autotune.profile.schema import ArtifactInfo, BackendInfo, ModelInfo, Predicted
from autotune.testing import BackendConformance, prepare_artifact
from autotune.testing.conformance import example_hardware
from autotune_openvino import OpenVINOBackend, compile_properties, openvino_accelerators
from autotune_openvino import plugin as openvino_plugin
from autotune_openvino.compile import compile_ir
from autotune_openvino.convert import DETOKENIZER_IR, IR_FILE, RECORD_FILE, TOKENIZER_IR, conversion_unavailable
from autotune_openvino.decoder import Decoder
from autotune_openvino.exporters import render_config, render_python

pytest.importorskip("openvino")
pytest.importorskip("nncf")

RUNTIME = {"device": "CPU", "threads": 2, "performance_hint": "LATENCY", "inference_precision": "f32",
           "kv_cache_precision": "u8"}


class TestOpenVINOConformance(BackendConformance):
    @pytest.fixture
    def backend(self) -> OpenVINOBackend:
        return OpenVINOBackend()

    @pytest.fixture
    def model_path(self, tiny_ir: Path) -> Path:
        return tiny_ir

    @pytest.fixture
    def artifact(self, backend: OpenVINOBackend, source, params, cached: Path) -> Artifact:  # type: ignore[override]
        artifact, _ = prepare_artifact(backend, source, params)
        return artifact


def test_conversion_writes_a_stateful_ir_genai_accepts(tiny_ir: Path) -> None:
    for name in (IR_FILE, TOKENIZER_IR, DETOKENIZER_IR, "tokenizer.json", "config.json"):
        assert (tiny_ir / name).is_file(), name
    record = json.loads((tiny_ir / RECORD_FILE).read_text())
    assert record["tokenizer_ir"] is True
    source = OpenVINOBackend().inspect(tiny_ir)
    assert source.format == "openvino" and source.precision == "fp16" and source.architecture == "llama"
    assert source.metadata["kv_layers"] == 2 and source.metadata["kv_heads"] == 2 and source.metadata["head_dim"] == 32
    assert source.metadata["hidden"] == 128
    vocab = json.loads((tiny_ir / "config.json").read_text())["vocab_size"]
    assert source.metadata["vocab"] == vocab
    hf_params = vocab * 128 * 2 + 2 * (128 * 128 * 2 + 64 * 128 * 2 + 3 * 128 * 256)
    assert source.parameters == hf_params


def test_converted_model_matches_transformers_step_by_step(tiny_hf: Path, tiny_ir: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    tokens = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48]
    model = AutoModelForCausalLM.from_pretrained(tiny_hf, dtype=torch.float32)
    with torch.no_grad():
        reference = torch.log_softmax(model(torch.tensor([tokens])).logits[0], -1).numpy()
    decoder = Decoder(compile_ir(tiny_ir, RUNTIME, last_logits_only=False))
    decoder.reset()
    rows = [np.array(decoder.feed(tokens[:4], 0))]  # a prefill, then one token at a time through the KV cache
    rows += [np.array(decoder.feed([token], position)) for position, token in enumerate(tokens[4:], start=4)]
    logits = np.concatenate(rows)
    logprobs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    assert np.abs(logprobs - reference).max() < 0.02  # float16 weights in the IR


def test_int4_artifact_is_smaller_and_records_what_was_written(tiny_ir: Path, cached: Path) -> None:
    backend = OpenVINOBackend()
    source = backend.inspect(tiny_ir)
    fp16, _ = prepare_artifact(backend, source, {"weight_format": "fp16", **RUNTIME})
    int8, _ = prepare_artifact(backend, source, {"weight_format": "int8", **RUNTIME})
    int4, _ = prepare_artifact(backend, source, {"weight_format": "int4_sym_g32", **RUNTIME})
    assert int4.size_bytes < int8.size_bytes < fp16.size_bytes
    assert 4 < int4.bits_per_weight < 8 < int8.bits_per_weight < 9 and 15.9 < fp16.bits_per_weight < 16.1
    assert set(int4.details["weight_tensors"]) == {"int4", "int8"}  # embedding and lm_head stay at 8 bits
    assert int4.details["group_sizes"] == {"32": int4.details["weight_tensors"]["int4"]}
    assert int8.details["weight_tensors"] == {"int8": 16}
    # An already-compressed IR is kept as it is: requantizing never beats it.
    compressed = backend.inspect(int4.path)
    assert compressed.precision == "int4"
    space = backend.search_space(compressed, example_hardware(), Workload())
    assert space["weight_format"].choices == ("source",)


def test_predict_orders_formats_and_kv_precisions(tiny_ir: Path) -> None:
    backend = OpenVINOBackend()
    source = backend.inspect(tiny_ir)
    workload, hardware = Workload(prompt_tokens=128, gen_tokens=64, context=2048), example_hardware()

    def memory(**changes: str) -> int:
        params = {"weight_format": "fp16", **RUNTIME, **changes}
        return backend.predict(source, params, workload, hardware).memory_bytes

    assert memory(weight_format="int4_asym_g128") < memory(weight_format="int8") < memory()
    assert memory(kv_cache_precision="u8") < memory(kv_cache_precision="f16") < memory(kv_cache_precision="f32")


def test_tokenize_uses_tokenizer_json_with_bos(tiny_ir: Path) -> None:
    from tokenizers import Tokenizer

    backend = OpenVINOBackend()
    ids = backend.tokenize(backend.inspect(tiny_ir), "The quick brown fox")
    assert ids[0] == 1 and ids == Tokenizer.from_file(str(tiny_ir / "tokenizer.json")).encode("The quick brown fox").ids


def test_search_space_follows_hardware(tiny_ir: Path) -> None:
    backend = OpenVINOBackend()
    source = backend.inspect(tiny_ir)
    plain = backend.search_space(source, example_hardware(cores=4), Workload())
    assert plain["inference_precision"].choices == ("f32",) and plain["device"].choices == ("CPU",)
    assert plain["threads"].high == 4
    hardware = example_hardware()
    hardware.cpu.features.append("avx512_bf16")
    hardware.accelerators.append(Accelerator(kind="openvino", name="GPU.0"))
    richer = backend.search_space(source, hardware, Workload())
    assert richer["inference_precision"].choices == ("f32", "bf16") and richer["device"].choices == ("CPU", "GPU.0")
    assert backend.untuned_params(source, hardware, Workload())["inference_precision"] == "bf16"


def test_unavailable_with_a_reason_when_openvino_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    availability = OpenVINOBackend().availability()
    assert not availability.available and "pip install openvino" in availability.reason
    assert "openvino" in (conversion_unavailable() or "")
    assert openvino_accelerators() == []


def test_plugin_imports_without_any_runtime() -> None:
    hidden = ("openvino", "openvino_tokenizers", "openvino_genai", "nncf", "torch", "transformers", "tokenizers")
    code = (
        f"import sys\nfor name in {hidden!r}: sys.modules[name] = None\n"
        "from autotune_openvino import plugin\n"
        "[backend] = plugin.autotune_backends()\n"
        "print(backend.availability().reason)\n"
        "print(plugin.HF_TO_OPENVINO.available())\n"
        "print(list(plugin.autotune_hardware_facts()), [e.name for e in plugin.autotune_exporters()])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    reason, conversion, rest = result.stdout.splitlines()
    assert reason == "openvino, nncf, tokenizers not installed: pip install openvino nncf tokenizers"
    assert conversion.startswith("converting HF models to OpenVINO needs torch, transformers, openvino, openvino_tokenizers")
    assert rest == "[] ['openvino-config', 'openvino-python', 'openvino-genai']"


def test_device_hook_reports_only_non_cpu_devices() -> None:
    import openvino as ov

    if [d for d in ov.Core().available_devices if not d.startswith("CPU")]:
        pytest.skip("this machine has OpenVINO accelerators")
    assert list(openvino_plugin.autotune_hardware_facts()) == []

    class FakeCore:
        available_devices = ["CPU", "GPU.0", "NPU"]

        def get_property(self, device: str, name: str) -> object:
            values = {"FULL_DEVICE_NAME": f"Intel {device}", "GPU_DEVICE_TOTAL_MEM_SIZE": 2**33}
            if name not in values:
                raise RuntimeError("unsupported property")
            return values[name]

    found = openvino_accelerators(FakeCore())
    assert [(a.kind, a.name) for a in found] == [("openvino", "GPU.0"), ("openvino", "NPU")]
    assert found[0].memory_bytes == 2**33 and found[1].memory_bytes is None
    assert found[1].details == {"full_name": "Intel NPU"}


def test_plugin_contributes_backend_conversion_and_exporters() -> None:
    manager = PluginManager()
    manager.register(openvino_plugin, "openvino")
    assert "openvino" in manager.backends()
    assert [(c.name, c.source_format, c.target_format) for c in manager.conversions()] == [("hf-to-openvino", "hf", "openvino")]
    exporters = manager.exporters()
    assert {"openvino-config", "openvino-python", "openvino-genai"} <= set(exporters)
    assert exporters["openvino-python"].applies_to("openvino") and not exporters["openvino-config"].applies_to("llamacpp")


def _profile(artifact_path: Path, params: dict[str, object]) -> DeploymentProfile:
    measured = Measurement(load_s=0.1, ttft_ms=5, itl_p50_ms=1, itl_p95_ms=2, decode_tps=500, prefill_tps=4000,
                           runs=1, spread=0.0)
    return DeploymentProfile(
        autotune_version="test", hardware={}, model=ModelInfo(path="/models/tiny", format="hf", sha256="0" * 64),
        backend=BackendInfo(name="openvino"), params=params,
        artifact=ArtifactInfo(path=str(artifact_path), format="openvino", precision="int8", bits_per_weight=8.0,
                              size_bytes=1),
        workload=Workload(), budget=Budget(memory_bytes=2**30, latency_ms=50), objective="fastest",
        measured=measured, predicted=Predicted(memory_bytes=1),
    )


def test_exporters_render_config_and_a_script_that_runs(tiny_ir: Path, cached: Path, tmp_path: Path) -> None:
    backend = OpenVINOBackend()
    params = {"weight_format": "int8", **RUNTIME}
    artifact, _ = prepare_artifact(backend, backend.inspect(tiny_ir), params)
    awkward = tmp_path / "it's a \"model\" dir"  # quotes and spaces must survive into the script
    shutil.copytree(artifact.path, awkward)
    profile = _profile(awkward, params)
    config = json.loads(render_config(profile))
    assert config == {"evidence": evidence(profile), "model": f"{awkward}/{IR_FILE}", "device": "CPU",
                      "properties": compile_properties(params)}
    assert config["properties"] == {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY",
                                    "INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "u8"}
    text = render_python(profile)
    assert text.startswith(evidence_comment(profile))
    script = tmp_path / "run.py"
    script.write_text(text.replace("max_new_tokens=64", "max_new_tokens=4"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_odd_config_in_the_model_folder_is_not_read(tmp_path: Path) -> None:
    """A FIFO named config.json would hang the read, /dev/zero would fill memory: both read as no config."""
    import os
    import threading

    from autotune_openvino.backend import _read_json

    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    device = tmp_path / "device.json"
    device.symlink_to("/dev/zero")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.extend([_read_json(fifo), _read_json(device)]), daemon=True)
    reader.start()
    reader.join(10)
    assert found == [{}, {}]
