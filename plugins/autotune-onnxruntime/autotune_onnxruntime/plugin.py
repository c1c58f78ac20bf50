"""autotune plugin entry point (``onnxruntime = "autotune_onnxruntime.plugin"``).

Contributes the ``onnxruntime`` backend, the HF → ONNX conversion, the three exporters and the
usable ONNX Runtime device execution providers as hardware facts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import autotune
from autotune import Accelerator, Backend, Conversion, Exporter

from .backend import OnnxRuntimeBackend
from .convert import available, hf_to_onnx
from .exporters import EXPORTERS
from .providers import usable_providers


def _convert(source: Path, out_dir: Path) -> Path:
    return hf_to_onnx(source, out_dir, precision="fp32")


@autotune.hookimpl
def autotune_backends() -> Iterator[Backend]:
    """The ``onnxruntime`` backend (yielded even without its runtime; availability says why)."""
    yield OnnxRuntimeBackend()


@autotune.hookimpl
def autotune_conversions() -> Iterator[Conversion]:
    """HF → ONNX (fp32, onnxruntime-genai model builder): what the OpenVINO backend and ONNX tools consume."""
    yield Conversion(name="hf-to-onnx", source_format="hf", target_format="onnx", convert=_convert, available=available)


@autotune.hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """``genai-config``, ``onnxruntime-python`` and ``foundry-local``."""
    yield from EXPORTERS


@autotune.hookimpl
def autotune_hardware_facts() -> Iterator[Accelerator]:
    """Non-CPU execution providers that really work here (nothing on a CPU-only machine)."""
    providers = usable_providers()
    if not providers:
        return
    import onnxruntime

    for provider in providers:
        yield Accelerator(kind="onnxruntime-ep", name=provider.ort,
                          details={"provider": provider.short, "onnxruntime": onnxruntime.__version__})
