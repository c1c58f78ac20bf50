"""The hooks a plugin implements — this module doubles as the plugin author's tutorial.

A plugin is a module (or object) with functions named after these hooks and marked with
``autotune.hookimpl``; it is found through the ``autotune`` entry-point group::

    # pyproject.toml of your distribution
    [project.entry-points.autotune]
    mybackend = "autotune_mybackend.plugin"

    # autotune_mybackend/plugin.py
    import autotune

    @autotune.hookimpl
    def autotune_backends():
        yield MyBackend()

Every hook here is a *contribution* hook: implementations ``yield`` (or return a list of) typed
records and the host collects them from all plugins. Implementations may accept fewer arguments
than the spec, so hooks grow by adding parameters rather than new hooks.

A plugin that fails to import, or whose hook raises, is named in one warning line and skipped;
the rest of autotune keeps working. ``AUTOTUNE_DISABLE_PLUGINS=name1,name2`` disables plugins by
name (``autotune plugins`` lists the names).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from autotune.hardware import HardwareFact
    from autotune.plugins.backend import Backend
    from autotune.plugins.conversion import Conversion
    from autotune.plugins.exporter import Exporter

PROJECT = "autotune"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def autotune_hardware_facts(measure_bandwidth: bool) -> Iterable[HardwareFact]:
    """Yield facts about this machine: ``CpuInfo``, ``MemoryInfo``, ``MemoryBandwidth``, ``Accelerator``.

    The built-in probes contribute the CPU, memory, bandwidth and NVIDIA/Apple GPUs this way.
    A backend plugin adds the devices only it can see (OpenVINO's NPU, ONNX Runtime's execution
    providers). Accelerators from all plugins are kept (duplicates by kind+name dropped); for
    ``CpuInfo`` and ``MemoryInfo`` the first one yielded wins, so mark an implementation
    ``tryfirst=True`` to override the built-in CPU or memory probe.

    ``measure_bandwidth`` is False when the caller wants the facts fast (identity only): skip any
    benchmark then. Implementations that measure nothing may leave the argument out.
    """
    yield from ()


@hookspec
def autotune_backends() -> Iterable[Backend]:
    """Yield ``autotune.Backend`` instances this plugin provides.

    Names must be unique across plugins; a duplicate is reported and the later one skipped.
    Yield the backend even when its runtime is missing: ``availability()`` says why, and
    ``autotune plugins`` shows it.
    """
    yield from ()


@hookspec
def autotune_conversions() -> Iterable[Conversion]:
    """Yield ``autotune.Conversion`` records: format-to-format converters (gguf→hf, hf→onnx, ...).

    The tuner chains them to reach a format a backend accepts from what the user has.
    """
    yield from ()


@hookspec
def autotune_exporters() -> Iterable[Exporter]:
    """Yield ``autotune.Exporter`` records: profile renderers (llama-server command, Modelfile, ...)."""
    yield from ()
