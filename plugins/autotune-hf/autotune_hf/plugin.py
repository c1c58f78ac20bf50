"""autotune plugin entry point (``hf = "autotune_hf.plugin"``): contributes the GGUF → HF conversion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import autotune
from autotune import Conversion

from .convert import available, gguf_to_hf


def _convert(source: Path, out_dir: Path) -> Path:
    return gguf_to_hf(source, out_dir, dtype="float32")


def _memory_estimate(source: Path) -> int | None:
    """Every weight dequantized to float32, held twice (transformers' model and the tensors being written)."""
    try:
        from gguf import GGUFReader

        elements = sum(int(tensor.n_elements) for tensor in GGUFReader(source).tensors)
    except Exception:  # noqa: BLE001 - no estimate is better than a wrong refusal
        return None
    return elements * 4 * 2


@autotune.hookimpl
def autotune_conversions() -> Iterator[Conversion]:
    """GGUF → HF (float32 safetensors) through transformers' GGUF loader."""
    yield Conversion(name="gguf-to-hf", source_format="gguf", target_format="hf", convert=_convert, available=available,
                     memory_estimate=_memory_estimate)
