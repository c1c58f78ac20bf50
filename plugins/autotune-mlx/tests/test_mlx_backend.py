"""The MLX backend on a tiny random llama (real mlx-lm conversions, a real worker), and what needs no MLX."""

from __future__ import annotations

import ast
import json
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from autotune import Measurement, evidence_comment
from autotune.budget import Budget
from autotune.errors import AutotuneError
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Params
from autotune.plugins.manager import PluginManager
from autotune.profile.schema import ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted
from autotune.testing import BackendConformance, measure, prepare_artifact
from autotune.testing.conformance import example_hardware
from autotune.workload import Workload
from autotune_mlx import EXPORTERS, MlxBackend, plugin, probe
from autotune_mlx.convert import hoist_rope_parameters

pytest.importorskip("mlx_lm")

TEXT = "The quick brown fox jumps over the lazy dog. A small language model runs on a laptop. " * 2


@pytest.fixture(autouse=True)
def _cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One artifact cache for the whole module: each conversion runs once.
    monkeypatch.setenv("AUTOTUNE_CACHE", str(shared_cache))


@pytest.fixture(scope="module")
def mlx_backend() -> MlxBackend:
    return MlxBackend()


@pytest.fixture(scope="module")
def tiny_source(mlx_backend: MlxBackend, tiny_hf: Path, shared_cache: Path) -> ModelSource:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTUNE_CACHE", str(shared_cache))
        return mlx_backend.inspect(tiny_hf)


def _params(bits: int, **extra: object) -> Params:
    return {"bits": bits, "group_size": 64, "mixed": False, "dtype": "float32", "kv_bits": 16, **extra}


def _build(backend: MlxBackend, source: ModelSource, params: Params) -> Artifact:
    return prepare_artifact(backend, source, params)[0]


class TestMlxConformance(BackendConformance):
    @pytest.fixture
    def backend(self, mlx_backend: MlxBackend) -> MlxBackend:
        return mlx_backend

    @pytest.fixture
    def model_path(self, tiny_hf: Path) -> Path:
        return tiny_hf

    @pytest.fixture
    def artifact(self, backend: MlxBackend, source: ModelSource, params: Params) -> Artifact:
        return _build(backend, source, params)


def test_four_bits_is_smaller_than_eight_and_records_what_was_written(mlx_backend: MlxBackend,
                                                                        tiny_source: ModelSource) -> None:
    q4, q8, full = (_build(mlx_backend, tiny_source, _params(bits)) for bits in (4, 8, 16))
    assert q4.size_bytes < q8.size_bytes < full.size_bytes
    # 4 or 8 bits plus a float32 scale and bias per 64 weights; the norms stay float32.
    assert 5.0 < q4.bits_per_weight < 5.1 and 9.0 < q8.bits_per_weight < 9.1 and full.bits_per_weight == 32.0
    assert (q4.precision, q8.precision, full.precision) == ("q4-g64-float32", "q8-g64-float32", "float32")
    config = json.loads((q4.path / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 64
    # Every linear layer (7 per block, 2 blocks), the embedding and the output head are quantized.
    assert q4.details["quantized_layers"] == 16 and q4.details["unquantized_matrices"] == []
    assert q4.details["kv_group_size"] == 32  # the tiny model's heads are 32 wide


def test_mixed_recipe_raises_some_layers_to_six_bits(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    params = _params(4, mixed=True)
    mixed = _build(mlx_backend, tiny_source, params)
    uniform = _build(mlx_backend, tiny_source, _params(4))
    assert mixed.precision == "mixed_4_6-g64-float32"
    # lm_head, and v_proj/down_proj of the last of two layers (mlx-lm's mixed_4_6 rule).
    assert mixed.details["layers_by_bits"] == {"4": 13, "6": 3}
    assert uniform.size_bytes < mixed.size_bytes
    predicted = mlx_backend.predict(tiny_source, params, Workload(), example_hardware()).breakdown["weights"]
    assert abs(predicted - mixed.size_bytes) / mixed.size_bytes < 0.05


def test_settings_that_cannot_matter_share_one_artifact(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    unquantized = {_build(mlx_backend, tiny_source, _params(16, group_size=g, mixed=m)).path
                   for g, m in ((32, False), (64, True), (128, False))}
    assert len(unquantized) == 1
    eight = {_build(mlx_backend, tiny_source, _params(8, mixed=m)).path for m in (False, True)}
    assert len(eight) == 1  # mlx-lm has no mixed recipe built on 8 bits
    # Unquantized weights have no group size: spelled as the default 64, a value of the space itself.
    assert mlx_backend.canonical_params(_params(16, group_size=32)) == _params(16, group_size=64)


def test_rejects_what_mlx_cannot_build(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    with pytest.raises(AutotuneError, match="bits must be one of"):
        mlx_backend.predict(tiny_source, _params(5), Workload(), example_hardware())
    with pytest.raises(AutotuneError, match="group_size must be one of"):
        mlx_backend.predict(tiny_source, _params(4, group_size=48), Workload(), example_hardware())


@pytest.fixture(scope="module")
def kv8_measurement(mlx_backend: MlxBackend, tiny_source: ModelSource,
                    shared_cache: Path) -> tuple[Params, Workload, Measurement]:
    """One worker run with a quantized KV cache, a short prefill step and a deep run."""
    params = _params(4, kv_bits=8, prefill_step_size=256)
    workload = Workload(prompt_tokens=16, gen_tokens=8, context=512, runs=2, depth=300)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOTUNE_CACHE", str(shared_cache))
        artifact = _build(mlx_backend, tiny_source, params)
    result = measure(mlx_backend, artifact, params, workload, timeout_s=300, memory_limit_bytes=None)
    assert result.ok, result.error
    return params, workload, result.value


def test_runtime_settings_and_deep_run_are_measured(kv8_measurement: tuple[Params, Workload, Measurement]) -> None:
    _params_, workload, m = kv8_measurement
    # 2 timed runs, or 4 when their spread made the protocol re-measure (autotune.plugins.protocol)
    assert m.runs == 2 + m.extra_runs and m.extra_runs in (0, 2) and len(m.decode_tps_runs) == m.runs
    assert m.deep_depth == 300 and m.deep_itl_p50_ms and m.deep_itl_p95_ms and m.deep_itl_p95_ms >= m.deep_itl_p50_ms
    assert m.context["mlx_device"].startswith("Device(")
    assert 0 < int(m.context["mlx_peak_memory_bytes"]) < m.peak_rss_bytes  # type: ignore[arg-type, operator]


def test_predicted_memory_matches_the_worker_peak(mlx_backend: MlxBackend, tiny_source: ModelSource,
                                                  kv8_measurement: tuple[Params, Workload, Measurement]) -> None:
    params, workload, m = kv8_measurement
    prediction = mlx_backend.predict(tiny_source, params, workload, example_hardware())
    # The worker's own peak (VmHWM): getrusage's peak survives exec on Linux, so the worker's
    # peak_rss_bytes can be this test process's peak instead (see runner.process_peak_rss).
    peak = int(m.peak_rss_bytes or 0)
    assert abs(prediction.memory_bytes - peak) / peak < 0.15, (prediction, peak)
    assert prediction.latency_lower_bound_ms and prediction.latency_lower_bound_ms > 0  # CPU: bandwidth bound


def test_quantized_kv_cache_is_smaller_in_the_prediction(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    workload = Workload(context=4096)
    kv = {bits: mlx_backend.predict(tiny_source, _params(4, kv_bits=bits), workload,
                                    example_hardware()).breakdown["kv_cache"] for bits in (16, 8, 4)}
    assert kv[16] == 2 * 2 * 2 * 32 * 4096 * 4  # K+V, 2 layers, 2 KV heads of 32, float32
    assert kv[4] < kv[8] < kv[16]


def test_logprobs_match_the_pytorch_reference(mlx_backend: MlxBackend, tiny_hf: Path, tmp_path: Path) -> None:
    """A transformers-5 style config (RoPE base only under ``rope_parameters``) converts faithfully."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    folder = Path(shutil.copytree(tiny_hf, tmp_path / "tiny-rope"))
    config = json.loads((folder / "config.json").read_text())
    del config["rope_theta"]
    config["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    (folder / "config.json").write_text(json.dumps(config))
    source = mlx_backend.inspect(folder)
    tokens = mlx_backend.tokenize(source, TEXT)
    artifact = _build(mlx_backend, source, _params(16))
    assert json.loads((artifact.path / "config.json").read_text())["rope_theta"] == 500000.0
    (chunk, *_) = mlx_backend.logprobs(artifact, _params(16), tokens, chunk_tokens=48)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        reference = torch.log_softmax(model(torch.tensor([tokens[:48]])).logits[0, :-1], dim=-1).numpy()
    assert chunk.shape == reference.shape == (47, 384) and chunk.dtype == np.float32
    assert np.abs(chunk - reference).max() < 1e-4


def test_rope_scaling_moves_to_the_keys_mlx_lm_reads(tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    rope = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0}
    config_file.write_text(json.dumps({"model_type": "llama", "rope_parameters": rope}))
    assert hoist_rope_parameters(config_file)
    config = json.loads(config_file.read_text())
    assert config["rope_theta"] == 500000.0 and config["rope_scaling"] == {"rope_type": "llama3", "factor": 32.0}
    assert not hoist_rope_parameters(config_file)  # already there: left alone


def test_tokenize_adds_bos_once(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    tokens = mlx_backend.tokenize(tiny_source, "The quick brown fox")
    assert tokens[0] == 1 and 1 not in tokens[1:]


def test_search_space(mlx_backend: MlxBackend, tiny_source: ModelSource) -> None:
    hardware = example_hardware()
    short = mlx_backend.search_space(tiny_source, hardware, Workload(prompt_tokens=128, depth=0))
    assert short["dtype"].choices == ("float32",)  # CPU build: half precision is emulated (slow)
    assert short["kv_bits"].choices == (16, 8, 4) and "prefill_step_size" not in short
    long = mlx_backend.search_space(tiny_source, hardware, Workload(prompt_tokens=128, depth=None))
    assert long["prefill_step_size"].choices == (256, 512, 1024, 2048)
    shape = {**tiny_source.metadata["config"], "head_dim": 48}  # type: ignore[dict-item]
    odd_heads = ModelSource(path=tiny_source.path, format="hf", sha256=tiny_source.sha256, metadata={"config": shape})
    assert mlx_backend.search_space(odd_heads, hardware, Workload())["kv_bits"].choices == (16,)
    assert mlx_backend.untuned_params(tiny_source, hardware, Workload())["bits"] == 16
    assert mlx_backend.describe(_params(4, kv_bits=8, prefill_step_size=512)) == "q4-g64-float32 kv8 prefill512"


def test_availability_names_the_device(mlx_backend: MlxBackend) -> None:
    availability = mlx_backend.availability()
    assert availability.available and availability.version and "+mlx-lm." in availability.version
    assert availability.details["device"].startswith("CPU" if sys.platform != "darwin" else ("Metal", "CPU"))


def test_unavailable_when_mlx_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlx", None)
    availability = MlxBackend().availability()
    assert not availability.available and "pip install" in availability.reason


def test_plugin_imports_without_mlx() -> None:
    code = (
        "import sys\n"
        "sys.modules['mlx'] = sys.modules['mlx.core'] = sys.modules['mlx_lm'] = None\n"
        "from autotune_mlx import plugin\n"
        "(backend,) = plugin.autotune_backends()\n"
        "print(backend.availability().reason)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "MLX is not usable here" in result.stdout and "pip install" in result.stdout


def test_plugin_manager_sees_backend_and_exporters() -> None:
    manager = PluginManager()
    manager.register(plugin, "mlx")
    assert "mlx" in manager.backends()
    assert {"mlx-lm-generate", "mlx-lm-server", "mlx-python"} <= set(manager.exporters())


# -- probe -----------------------------------------------------------------------------------------


def test_probe_contributes_nothing_off_macos() -> None:
    if sys.platform == "darwin":
        pytest.skip("this machine is a Mac")
    assert list(plugin.autotune_hardware_facts()) == []


def test_probe_reports_the_metal_gpu_as_mlx_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("mlx.core")
    fake.gpu = "gpu"  # type: ignore[attr-defined]
    fake.metal = types.SimpleNamespace(is_available=lambda: True)  # type: ignore[attr-defined]
    fake.device_info = lambda device: {  # type: ignore[attr-defined]
        "device_name": "Apple M2 Pro", "architecture": "applegpu_g14s", "memory_size": 34359738368,
        "max_recommended_working_set_size": 25769803776}
    monkeypatch.setitem(sys.modules, "mlx", types.ModuleType("mlx"))
    monkeypatch.setitem(sys.modules, "mlx.core", fake)
    monkeypatch.setattr(probe.sys, "platform", "darwin")
    (gpu,) = probe.metal_accelerators()
    assert (gpu.kind, gpu.name, gpu.memory_bytes) == ("metal", "Apple M2 Pro", 34359738368)
    assert gpu.details["architecture"] == "applegpu_g14s" and gpu.details["unified_memory"] == "true"


# -- exporters -------------------------------------------------------------------------------------

NASTY_PATH = "/tmp/my models/it's a \"q\"; rm -rf ~ $(id)"


def _profile(path: str, **params: object) -> DeploymentProfile:
    return DeploymentProfile(
        autotune_version="0.1.0", hardware={"fingerprint": "abc"},
        model=ModelInfo(path="/models/smol", format="hf", sha256="0" * 64),
        backend=BackendInfo(name="mlx", version="0.32.4+mlx-lm.0.32.2"),
        params={**_params(4), **params},
        artifact=ArtifactInfo(path=path, format="mlx", precision="q4-g64-float32", bits_per_weight=5.0,
                              size_bytes=100, details={"kv_group_size": 64}),
        workload=Workload(gen_tokens=48), budget=Budget.parse("2GB", "50ms"), objective="fastest",
        measured=Measurement(load_s=0.1, ttft_ms=10, itl_p50_ms=5, itl_p95_ms=6, decode_tps=200, prefill_tps=900,
                             peak_rss_bytes=10**8, runs=3, spread=0.01),
        predicted=Predicted(memory_bytes=10**8),
    )


def _exporter(name: str):  # noqa: ANN202 - test helper
    return next(e for e in EXPORTERS if e.name == name)


def test_generate_command_round_trips_through_the_shell() -> None:
    argv = shlex.split(_exporter("mlx-lm-generate").render(_profile(NASTY_PATH, kv_bits=8, prefill_step_size=512)),
                       comments=True)
    assert argv[:3] == ["mlx_lm.generate", "--model", NASTY_PATH]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert flags["--max-tokens"] == "48" and flags["--kv-bits"] == "8" and flags["--kv-group-size"] == "64"
    assert flags["--quantized-kv-start"] == "0" and flags["--prefill-step-size"] == "512"


def test_server_command_leaves_defaults_out() -> None:
    argv = shlex.split(_exporter("mlx-lm-server").render(_profile(NASTY_PATH)), comments=True)
    assert argv[:3] == ["mlx_lm.server", "--model", NASTY_PATH]
    assert "--kv-bits" not in argv and "--prefill-step-size" not in argv
    assert dict(zip(argv[3::2], argv[4::2], strict=True))["--host"] == "127.0.0.1"


def test_python_snippet_is_valid_python_with_the_settings() -> None:
    profile = _profile(NASTY_PATH, kv_bits=4)
    text = _exporter("mlx-python").render(profile)
    assert text.startswith(evidence_comment(profile))
    tree = ast.parse(text)
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]
    assert NASTY_PATH in strings and "Hello" in strings
    settings = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SETTINGS")
    assert ast.literal_eval(settings) == {"kv_bits": 4, "kv_group_size": 64, "quantized_kv_start": 0}
    generate = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "generate")
    assert ast.literal_eval(generate.args.defaults[0]) == 48  # the measured number of tokens


def test_shell_exports_start_with_their_evidence() -> None:
    profile = _profile(NASTY_PATH)
    for name in ("mlx-lm-generate", "mlx-lm-server"):
        text = _exporter(name).render(profile)
        assert text.startswith(evidence_comment(profile)) and shlex.split(text, comments=True)[0] == name.replace("mlx-lm-", "mlx_lm.")


def test_exporters_apply_only_to_mlx() -> None:
    assert all(e.applies_to("mlx") and not e.applies_to("llamacpp") for e in EXPORTERS)
