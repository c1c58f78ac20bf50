"""OpenVINO's devices as hardware facts: the GPUs and NPUs only OpenVINO sees.

The CPU is the built-in probe's business, so it is never reported here. ``Accelerator.name``
is the device id ``compile_model`` takes (``GPU.0``, ``NPU``); the marketing name goes into
``details``. Without openvino installed there is nothing to report and nothing fails.
"""

from __future__ import annotations

import logging
from typing import Any

from autotune import Accelerator

log = logging.getLogger("autotune.openvino")

DETAIL_PROPERTIES = {"full_name": "FULL_DEVICE_NAME", "device_type": "DEVICE_TYPE", "architecture": "DEVICE_ARCHITECTURE"}


def openvino_accelerators(core: Any | None = None) -> list[Accelerator]:
    """Every non-CPU device in ``ov.Core().available_devices``, as ``Accelerator(kind="openvino")``."""
    if core is None:
        try:
            import openvino as ov
        except ImportError:
            return []
        try:
            core = ov.Core()
        except Exception as error:  # noqa: BLE001 - a broken runtime means no devices, not a failed probe
            log.warning("openvino could not start (%r); no OpenVINO devices reported", error)
            return []
    found = []
    for device in core.available_devices:
        if device.split(".")[0] == "CPU":
            continue
        details = {}
        for key, prop in DETAIL_PROPERTIES.items():
            value = _property(core, device, prop)
            if value is not None:
                details[key] = str(value)
        memory = _property(core, device, "GPU_DEVICE_TOTAL_MEM_SIZE") if device.startswith("GPU") else None
        found.append(Accelerator(kind="openvino", name=device, memory_bytes=int(memory) if memory else None,
                                 details=details))
    return found


def _property(core: Any, device: str, name: str) -> Any | None:
    try:
        return core.get_property(device, name)
    except Exception:  # noqa: BLE001 - devices differ in which properties they support
        return None
