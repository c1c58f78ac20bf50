"""The examples stay runnable: the one-file exporter plugin registers and renders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autotune.budget import Budget
from autotune.measurement import Measurement
from autotune.plugins.manager import PluginManager
from autotune.profile.schema import ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted
from autotune.workload import Workload

EXAMPLE = Path(__file__).parents[1] / "examples" / "systemd_exporter_plugin.py"


def test_systemd_exporter_plugin() -> None:
    spec = importlib.util.spec_from_file_location("systemd_exporter_plugin", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manager = PluginManager()
    manager.register(module, "systemd")
    exporter = manager.exporters()["systemd"]
    assert exporter.applies_to("llamacpp") and not exporter.applies_to("mlx")
    profile = DeploymentProfile(
        autotune_version="0", hardware={}, model=ModelInfo(path="/m/x.gguf", format="gguf", sha256="0" * 64),
        backend=BackendInfo(name="llamacpp"), params={},
        artifact=ArtifactInfo(path="/m/x.gguf", format="gguf", precision="Q4_0", bits_per_weight=4.5, size_bytes=1),
        workload=Workload(), budget=Budget.parse("2GB", "50ms"), objective="quality",
        measured=Measurement(load_s=0, ttft_ms=1, itl_p50_ms=1, itl_p95_ms=1, decode_tps=1, prefill_tps=1, runs=1, spread=0),
        predicted=Predicted(memory_bytes=1), exports={"llama-server": "llama-server -m /m/x.gguf -t 2"},
    )
    unit = exporter.render(profile)
    assert "ExecStart=llama-server -m /m/x.gguf -t 2" in unit and "MemoryMax=2000000000" in unit
