"""autotune plugin entry point (``mlx = "autotune_mlx.plugin"``): the MLX backend, its exporters and Metal facts."""

from __future__ import annotations

from collections.abc import Iterator

import autotune
from autotune import Backend, Exporter, HardwareFact

from .backend import MlxBackend
from .exporters import EXPORTERS
from .probe import metal_accelerators


@autotune.hookimpl
def autotune_backends() -> Iterator[Backend]:
    """The ``mlx`` backend (yielded even without MLX installed: its availability says why)."""
    yield MlxBackend()


@autotune.hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """``mlx-lm-generate``, ``mlx-lm-server`` and ``mlx-python``."""
    yield from EXPORTERS


@autotune.hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """The Metal GPU as MLX reports it (macOS only)."""
    yield from metal_accelerators()
