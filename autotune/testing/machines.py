"""The captured machines of ``tests/fixtures/hardware/`` as ``Hardware``, the way the probe would see them there.

Replay tests and benchmarks pair a measured grid with the machine it was measured on: the capture's
``/proc/cpuinfo`` block, sysfs caches, NUMA nodes, cgroup files and ``/proc/meminfo`` go through the
probe's own parsers (``autotune.probe``), over a scratch folder shaped like ``/``. The copy
bandwidth of the capture is one thread's (``numpy_copy_bandwidth_GBps_1thread``), so the
all-threads figure stays unknown.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from autotune.hardware import Hardware
from autotune.probe import cpu, memory, nvidia
from autotune.testing.captures import sections


def captured_hardware(machine: Path) -> Hardware:
    """The ``Hardware`` of the capture folder ``machine`` (``system.txt``, ``cpuinfo_first.txt``, ...)."""
    parts = sections(machine)
    proc_self_cgroup = "\n".join(line for line in parts["cgroup"].splitlines() if not line.startswith("/"))
    report = json.loads((machine / "python_probe.json").read_text())
    with tempfile.TemporaryDirectory(prefix="capture-") as scratch:
        root = fake_root(parts, Path(scratch))
        cpu_info = cpu.linux_cpu_info((machine / "cpuinfo_first.txt").read_text(), proc_self_cgroup, root=root,
                                      architecture=str(report.get("machine") or "x86_64"))
        memory_info = memory.memory_info(parts["meminfo"], proc_self_cgroup, root)
    one_thread = report.get("numpy_copy_bandwidth_GBps_1thread")
    if one_thread:
        memory_info.bandwidth_1thread_bytes_per_s = float(one_thread) * 1e9
    smi = machine / "nvidia-smi.xml"
    accelerators = nvidia.parse_nvidia_smi_xml(smi.read_text()) if smi.exists() else []
    return Hardware(cpu=cpu_info, memory=memory_info, accelerators=accelerators, os=str(report.get("platform", "")))


def fake_root(parts: dict[str, str], root: Path) -> Path:
    """A folder shaped like ``/`` holding the capture's sysfs caches, NUMA nodes and cgroup files."""
    for line in parts["caches"].splitlines():
        path, *fields = line.split()
        values = dict(field.split("=", 1) for field in fields)
        folder = root / path.lstrip("/")
        folder.mkdir(parents=True)
        for name, key in (("level", "level"), ("type", "type"), ("size", "size"), ("shared_cpu_list", "shared")):
            (folder / name).write_text(values[key] + "\n")
    for line in parts["numa"].split():
        (root / line.lstrip("/")).mkdir(parents=True)
    for line in parts["cgroup"].splitlines():
        if line.startswith("/"):
            path, _, value = line.partition(": ")
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(value + "\n")
    return root
