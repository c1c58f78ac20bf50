"""What MLX itself knows about the Metal GPU (Apple silicon), as a hardware fact.

The core's Apple probe already reports the GPU from ``sysctl``; this one adds what only MLX
reports (the GPU architecture, the recommended working-set size) under the same kind and name,
so the core keeps one entry. Off macOS there is no Metal and MLX is not even imported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from autotune import Accelerator
from autotune.errors import BackendUnavailable

from .runtime import device_info, import_mlx

_DETAIL_KEYS = ("architecture", "max_recommended_working_set_size", "max_buffer_length", "resource_limit")


def metal_accelerators() -> Iterator[Accelerator]:
    """The Metal GPU as MLX sees it; nothing when not on macOS, MLX is missing or Metal is unavailable."""
    if sys.platform != "darwin":
        return
    try:
        mx = import_mlx()
        if not mx.metal.is_available():
            return
    except BackendUnavailable:
        return
    info = device_info(mx, mx.gpu)
    memory = info.get("memory_size", "")
    details = {key: info[key] for key in _DETAIL_KEYS if key in info}
    details.update({"unified_memory": "true", "source": "mlx"})
    yield Accelerator(kind="metal", name=info.get("device_name") or "Apple silicon GPU",
                      memory_bytes=int(memory) if memory.isdigit() else None, details=details)
