"""The plugin module the ``autotune`` entry point names: the backend, its conversion, exporters and devices.

Importing it needs neither openvino nor torch; each contribution imports its runtime when used.
"""

from __future__ import annotations

from collections.abc import Iterator

from autotune import Backend, Conversion, Exporter, HardwareFact
from autotune.hookspecs import hookimpl

from .backend import OpenVINOBackend
from .convert import conversion_unavailable, convert_hf_to_openvino
from .devices import openvino_accelerators
from .exporters import EXPORTERS

HF_TO_OPENVINO = Conversion(
    name="hf-to-openvino",
    source_format="hf",
    target_format="openvino",
    convert=convert_hf_to_openvino,
    available=conversion_unavailable,
)
"""Traces an HF causal LM with its KV cache into a stateful OpenVINO IR (float16 weights)."""


@hookimpl
def autotune_backends() -> Iterator[Backend]:
    """Contribute the ``openvino`` backend (also when openvino is missing: it then says why)."""
    yield OpenVINOBackend()


@hookimpl
def autotune_conversions() -> Iterator[Conversion]:
    """Contribute the hf → openvino conversion."""
    yield HF_TO_OPENVINO


@hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """Contribute ``openvino-config``, ``openvino-python`` and ``openvino-genai``."""
    yield from EXPORTERS


@hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """Contribute OpenVINO's GPUs and NPUs (never the CPU, which the built-in probe reports)."""
    yield from openvino_accelerators()
