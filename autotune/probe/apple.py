"""The Apple silicon probe: the Metal GPU of an M-series Mac, which shares the machine's memory.

Facts come from ``sysctl`` (milliseconds), not ``system_profiler`` (about a second). On any other
system this probe contributes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

from autotune.hardware import Accelerator, HardwareFact
from autotune.hookspecs import hookimpl

SYSCTL_TIMEOUT_S = 5


def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl`` output (``name: value`` or ``name = value`` lines) as a dict of strings."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        for separator in (": ", " = ", ":"):
            name, found, value = line.partition(separator)
            if found and name.strip() and " " not in name.strip():
                values[name.strip()] = value.strip()
                break
    return values


def read_sysctl(names: list[str]) -> dict[str, str]:
    """Run ``sysctl`` for names or prefixes (``hw`` prints every ``hw.*``); {} when it is unavailable."""
    binary = shutil.which("sysctl") or ("/usr/sbin/sysctl" if sys.platform == "darwin" else None)
    if binary is None:
        return {}
    try:
        result = subprocess.run([binary, *names], capture_output=True, text=True,
                                timeout=SYSCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    # sysctl exits non-zero when one of several names is unknown but still prints the others.
    return parse_sysctl(result.stdout)


def metal_accelerator(values: dict[str, str]) -> Accelerator | None:
    """The Metal GPU described by macOS ``sysctl`` values, or None when they are not Apple silicon's.

    The GPU is part of the chip, so it takes the chip's name, and its memory is the unified memory
    (``hw.memsize``). ``hw.optional.arm64`` is checked rather than the Python's architecture so an
    x86 Python running under Rosetta still sees the GPU.
    """
    brand = values.get("machdep.cpu.brand_string", "").strip()
    if values.get("hw.optional.arm64", "").strip() != "1" and not brand.startswith("Apple"):
        return None
    memory = values.get("hw.memsize", "").strip()
    details = {"index": "0", "unified_memory": "true"}
    return Accelerator(kind="metal", name=brand or "Apple silicon GPU",
                       memory_bytes=int(memory) if memory.isdigit() else None, details=details)


@hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """Contribute the Metal GPU on an Apple silicon Mac; nothing elsewhere."""
    if sys.platform != "darwin":
        return
    accelerator = metal_accelerator(read_sysctl(["machdep.cpu.brand_string", "hw.memsize", "hw.optional.arm64"]))
    if accelerator is not None:
        yield accelerator
