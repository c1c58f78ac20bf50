"""The memory probe: total, available and swap memory, and the cgroup limit a container imposes.

``limit_bytes`` is what a process may really use: the smaller of physical memory and the cgroup
limit (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``). Inside a limited cgroup "available"
is also capped by what the cgroup has left, since the host's free memory is not ours to use.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from autotune.hardware import HardwareFact, MemoryInfo
from autotune.hookspecs import hookimpl
from autotune.probe.cpu import cgroup_dirs

# cgroup v1 writes "no limit" as LONG_MAX rounded down to a page (9223372036854771712); anything
# this large cannot be a real limit.
UNLIMITED_V1 = 2**62


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` contents as bytes per key (``kB`` values scaled, counts kept as is)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not fields[0].isdigit():
            continue
        scale = 1024 if len(fields) > 1 and fields[1].lower() == "kb" else 1
        values[key.strip()] = int(fields[0]) * scale
    return values


def _limit_value(text: str | None) -> int | None:
    """A cgroup memory limit file's value in bytes, None for "max" or v1's unlimited sentinel."""
    if text is None or not text.strip().isdigit():
        return None  # "max" (v2) or missing
    value = int(text)
    return None if value >= UNLIMITED_V1 else value


def cgroup_memory_limit(proc_self_cgroup: str, root: Path = Path("/")) -> int | None:
    """The cgroup memory limit in bytes (the smallest one up the hierarchy), None when unlimited."""
    limits: list[int] = []
    for folder in cgroup_dirs(proc_self_cgroup, "memory", root):
        for name in ("memory.max", "memory.limit_in_bytes"):
            value = _limit_value(_read(folder / name))
            if value is not None:
                limits.append(value)
    return min(limits) if limits else None


def cgroup_memory_free(proc_self_cgroup: str, root: Path = Path("/")) -> int | None:
    """What the innermost limited cgroup has left: limit minus its working set, None when unlimited.

    The working set is the usage less inactive page cache (which the kernel reclaims before it
    would kill anything), as ``docker stats`` and the kubelet count it.
    """
    for folder in cgroup_dirs(proc_self_cgroup, "memory", root):
        for limit_name, usage_name, inactive_key in (("memory.max", "memory.current", "inactive_file"),
                                                     ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                      "total_inactive_file")):
            limit = _limit_value(_read(folder / limit_name))
            usage = _read(folder / usage_name)
            if limit is None or usage is None or not usage.isdigit():
                continue
            stat = _parse_memory_stat(_read(folder / "memory.stat") or "")
            working_set = max(0, int(usage) - stat.get(inactive_key, 0))
            return max(0, limit - working_set)
    return None


def memory_info(meminfo_text: str, proc_self_cgroup: str, root: Path = Path("/")) -> MemoryInfo:
    """Build ``MemoryInfo`` from ``/proc/meminfo`` and ``/proc/self/cgroup`` contents and a cgroup root."""
    meminfo = parse_meminfo(meminfo_text)
    total = meminfo["MemTotal"]
    available = meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    limit = cgroup_memory_limit(proc_self_cgroup, root)
    free_in_cgroup = cgroup_memory_free(proc_self_cgroup, root)
    if free_in_cgroup is not None:
        available = min(available, free_in_cgroup)
    return MemoryInfo(
        total_bytes=total,
        available_bytes=available,
        swap_bytes=meminfo.get("SwapTotal", 0),
        cgroup_limit_bytes=limit,
        limit_bytes=min(total, limit) if limit is not None else total,
    )


def this_memory() -> MemoryInfo:
    """Probe the memory of the machine running this code."""
    if sys.platform.startswith("linux") and Path("/proc/meminfo").exists():
        return memory_info(_read(Path("/proc/meminfo")) or "", _read(Path("/proc/self/cgroup")) or "")
    import psutil

    virtual = psutil.virtual_memory()
    return MemoryInfo(total_bytes=virtual.total, available_bytes=virtual.available,
                      swap_bytes=psutil.swap_memory().total, limit_bytes=virtual.total)


def available_memory_bytes() -> int:
    """Memory this process could allocate now (changes all the time, so never cached)."""
    return this_memory().available_bytes


@hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """Contribute this machine's ``MemoryInfo``."""
    yield this_memory()


def _parse_memory_stat(text: str) -> dict[str, int]:
    """``memory.stat`` lines (``name value``) as a dict of ints."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[name] = int(value)
    return values


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
