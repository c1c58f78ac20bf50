"""Shared set-up for the benchmark scripts: plugins, hardware, backends and artifacts as `autotune run` sees them."""

from __future__ import annotations

from pathlib import Path

from autotune.hardware import Hardware
from autotune.measure.artifacts import prepare_artifact
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Backend, Params
from autotune.plugins.manager import PluginManager, get_plugin_manager
from autotune.probe.machine import probe


class Bench:
    """A plugin manager, the probed hardware, and one backend's view of a model."""

    def __init__(self, model: Path, backend: str = "llamacpp") -> None:
        self.manager: PluginManager = get_plugin_manager()
        self.hardware: Hardware = probe(self.manager)
        self.backend: Backend = self.manager.backend(backend)
        self.source: ModelSource = self.backend.inspect(model)

    def artifact(self, params: Params) -> Artifact:
        """The cached artifact for ``params`` (built on first use)."""
        return prepare_artifact(self.backend, self.source, params)[0]


def describe_machine(hardware: Hardware) -> str:
    """One line naming the machine a figure was measured on."""
    return (f"{hardware.cpu.brand} ({hardware.cpu.architecture}), {hardware.cpu.usable_cores} usable cores, "
            f"{hardware.memory.limit_bytes / 2**30:.1f} GiB, fingerprint {hardware.fingerprint}")
