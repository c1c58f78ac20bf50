"""The NVIDIA probe: GPUs through NVML (``pynvml`` from nvidia-ml-py), else ``nvidia-smi``.

A machine without the driver or the binary simply has no NVIDIA accelerators: nothing is reported
and nothing fails.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

from autotune.hardware import Accelerator, HardwareFact
from autotune.hookspecs import hookimpl

SMI_QUERY = "index,name,uuid,memory.total,driver_version,compute_cap"
SMI_TIMEOUT_S = 10

_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_memory(text: str, default_unit: str = "MiB") -> int | None:
    """``143771 MiB`` (or a bare number in ``default_unit``) as bytes; None for ``[N/A]`` and the like."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?i?B)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    unit = (match.group(2) or default_unit).lower()
    return int(float(match.group(1)) * _UNITS.get(unit, 2**20))


def _accelerator(name: str, memory_bytes: int | None, index: str, driver: str, compute_capability: str) -> Accelerator:
    details = {"index": index}
    if driver:
        details["driver"] = driver
    if compute_capability:
        details["compute_capability"] = compute_capability
    return Accelerator(kind="cuda", name=name, memory_bytes=memory_bytes, details=details)


def parse_nvidia_smi_csv(text: str) -> list[Accelerator]:
    """Parse ``nvidia-smi --query-gpu=... --format=csv`` output (with its header line).

    Columns are found by name, so extra columns (``memory.used``, ``pci.bus_id``...) do no harm.
    Anything that is not such a table (``command not found``, a driver error) gives no GPUs.
    """
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if row]
    if not rows:
        return []
    header = [re.sub(r"\s*\[.*\]$", "", column.strip()) for column in rows[0]]
    if "name" not in header:
        return []
    units = {re.sub(r"\s*\[.*\]$", "", c.strip()): (re.findall(r"\[(.*)\]", c) or ["MiB"])[0] for c in rows[0]}
    found: list[Accelerator] = []
    for position, row in enumerate(rows[1:]):
        values = {column: value.strip() for column, value in zip(header, row, strict=False)}  # a short row leaves columns out
        if not values.get("name"):
            continue
        found.append(_accelerator(
            name=values["name"],
            memory_bytes=parse_memory(values.get("memory.total", ""), units.get("memory.total", "MiB")),
            index=values.get("index", str(position)),
            driver=_known(values.get("driver_version", "")),
            compute_capability=_known(values.get("compute_cap", "")),
        ))
    return found


def parse_nvidia_smi_xml(text: str) -> list[Accelerator]:
    """Parse ``nvidia-smi -q -x`` output: one accelerator per ``<gpu>`` element."""
    root = ElementTree.fromstring(text)
    driver = _known(root.findtext("driver_version", ""))
    found: list[Accelerator] = []
    for position, gpu in enumerate(root.findall("gpu")):
        major = _known(gpu.findtext("compute_capability/major", "") or "")
        minor = _known(gpu.findtext("compute_capability/minor", "") or "")
        found.append(_accelerator(
            name=(gpu.findtext("product_name") or "").strip(),
            memory_bytes=parse_memory(gpu.findtext("fb_memory_usage/total", "") or ""),
            index=str(position),  # nvidia-smi lists GPUs in its index order
            driver=driver,
            compute_capability=f"{major}.{minor}" if major and minor else "",
        ))
    return found


def nvml_accelerators() -> list[Accelerator] | None:
    """GPUs as NVML reports them; None when NVML is not installed or finds no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None  # no driver (libnvidia-ml.so missing) or no device
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        found: list[Accelerator] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability = f"{major}.{minor}"
            except pynvml.NVMLError:
                capability = ""
            found.append(_accelerator(
                name=_text(pynvml.nvmlDeviceGetName(handle)),
                memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                index=str(index),
                driver=driver,
                compute_capability=capability,
            ))
        return found
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def nvidia_smi_accelerators() -> list[Accelerator]:
    """GPUs as ``nvidia-smi --query-gpu`` reports them; none when the binary is missing or fails."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        result = subprocess.run([binary, f"--query-gpu={SMI_QUERY}", "--format=csv"],
                                capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi_csv(result.stdout) if result.returncode == 0 else []


@hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """Contribute one ``Accelerator(kind="cuda")`` per NVIDIA GPU."""
    found = nvml_accelerators()
    yield from found if found is not None else nvidia_smi_accelerators()


def _known(value: str) -> str:
    """The value, or "" for nvidia-smi's ``N/A`` / ``[N/A]`` / ``[Not Supported]``."""
    value = value.strip()
    return "" if not value or value.strip("[]") in {"N/A", "Not Supported", "Unknown Error"} else value


def _text(value: str | bytes) -> str:
    """NVML returns bytes in old versions of the bindings, str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)
