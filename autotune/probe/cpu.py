"""The CPU probe: identity, ISA features, cores (affinity and cgroup quota applied), caches, NUMA.

On Linux everything comes from files read directly (``/proc/cpuinfo``, sysfs, cgroup files), which
takes milliseconds; py-cpuinfo takes about 1.2 s and reports wrong cache sizes, so it is only the
fallback on systems without ``/proc``. On macOS the facts come from ``sysctl``.

The parsers take file contents or a root folder, so tests feed them captures from other machines.
"""

from __future__ import annotations

import math
import os
import platform
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autotune.hardware import CacheLevel, CpuInfo, HardwareFact
from autotune.hookspecs import hookimpl

# Other spellings of ISA features (py-cpuinfo, macOS sysctl, ARM /proc/cpuinfo) mapped to the
# Linux x86 kernel's names, which are the canonical ones (see ``hardware.NOTABLE_FEATURES``).
FEATURE_ALIASES: dict[str, str] = {
    "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq",
    "avxvnni": "avx_vnni",
    "amxtile": "amx_tile",
    "amxint8": "amx_int8",
    "amxbf16": "amx_bf16",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "sse41": "sse4_1",
    "sse42": "sse4_2",
    "avx1.0": "avx",
    "rdrnd": "rdrand",
    "sha": "sha_ni",
    "tscdeadline": "tsc_deadline_timer",
    # ARM: the kernel calls the dot-product extension "asimddp".
    "asimddp": "dotprod",
}

# ``CPU implementer`` codes of ARM /proc/cpuinfo (the ARM ARM's MIDR_EL1 implementer field).
ARM_IMPLEMENTERS: dict[int, str] = {
    0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon", 0x4E: "NVIDIA",
    0x50: "APM", 0x51: "Qualcomm", 0x61: "Apple", 0x6D: "Microsoft", 0xC0: "Ampere",
}

# macOS ``sysctl hw.optional.*`` keys (value 1 = present) and the canonical feature each means.
SYSCTL_FEATURES: dict[str, str] = {
    "hw.optional.neon": "neon",
    "hw.optional.AdvSIMD": "asimd",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_FHM": "asimdfhm",
    "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.arm.FEAT_SME2": "sme2",
    "hw.optional.arm.FEAT_SVE": "sve",
    "hw.optional.arm.FEAT_SVE2": "sve2",
    "hw.optional.neon_fp16": "fp16",
    "hw.optional.armv8_2_fhm": "asimdfhm",
    "hw.optional.sse4_2": "sse4_2",
    "hw.optional.avx1_0": "avx",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.fma": "fma",
    "hw.optional.f16c": "f16c",
    "hw.optional.avx512f": "avx512f",
    "hw.optional.avx512bw": "avx512bw",
    "hw.optional.avx512vnni": "avx512_vnni",
}


def canonical_features(flags: Iterable[str]) -> list[str]:
    """One sorted lower-case set of ISA feature names, whatever tool spelled them.

    Aliases collapse to the Linux kernel's spelling (``avx512vnni`` and ``avx512_vnni`` become
    ``avx512_vnni``); ARM's ``asimd`` and ``neon`` are the same extension, so either brings both.
    """
    found: set[str] = set()
    for flag in flags:
        name = flag.strip().lower()
        if name:
            found.add(FEATURE_ALIASES.get(name, name))
    if found & {"asimd", "neon"}:
        found |= {"asimd", "neon"}
    return sorted(found)


@dataclass
class CpuinfoFacts:
    """What ``/proc/cpuinfo`` says (x86 or ARM layout)."""

    vendor: str = ""
    brand: str = ""
    flags: list[str] = field(default_factory=list)
    frequency_mhz: float | None = None
    logical_cores: int | None = None
    physical_cores: int | None = None


def parse_cpuinfo(text: str) -> CpuinfoFacts:
    """Parse ``/proc/cpuinfo`` contents (all blocks, or only the first one).

    Core counts come from the blocks present: unique ``(physical id, core id)`` pairs, or, when
    only part of the file is given, ``cpu cores`` and ``siblings`` per package.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    processors = [b for b in blocks if "processor" in b]
    merged: dict[str, str] = {}
    for block in blocks:  # first value wins; trailing blocks (ARM "Hardware") add keys
        for key, value in block.items():
            merged.setdefault(key, value)

    facts = CpuinfoFacts()
    facts.vendor = merged.get("vendor_id", "")
    if not facts.vendor and "cpu implementer" in merged:
        code = _int_auto(merged["cpu implementer"])
        facts.vendor = ARM_IMPLEMENTERS.get(code, merged["cpu implementer"]) if code is not None else ""
    facts.brand = merged.get("model name") or merged.get("hardware") or ""
    if not facts.brand and "cpu part" in merged:
        facts.brand = f"{facts.vendor or 'ARM'} CPU part {merged['cpu part']}"
    facts.flags = (merged.get("flags") or merged.get("features") or "").split()
    if "cpu mhz" in merged:
        facts.frequency_mhz = _float_or_none(merged["cpu mhz"])

    if processors:
        packages = {b.get("physical id", "0") for b in processors}
        cores = {(b.get("physical id", "0"), b["core id"]) for b in processors if "core id" in b}
        per_package_cores = _int_auto(processors[0].get("cpu cores", ""))
        per_package_threads = _int_auto(processors[0].get("siblings", ""))
        if per_package_threads and per_package_threads > len(processors):
            # Only part of the file was given: trust the per-package counts.
            facts.logical_cores = per_package_threads * len(packages)
            facts.physical_cores = (per_package_cores or per_package_threads) * len(packages)
        else:
            facts.logical_cores = len(processors)
            facts.physical_cores = len(cores) if cores else None
    return facts


def parse_cpu_list(text: str) -> set[int]:
    """Parse a kernel CPU list such as ``0-3,8,10-11`` into CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def parse_size(text: str) -> int:
    """Parse a sysfs/sysctl size such as ``32K``, ``1024K``, ``32M`` or ``65536`` into bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2).upper()]
    return int(match.group(1)) * scale


def read_caches(root: Path = Path("/")) -> list[CacheLevel]:
    """CPU 0's caches from ``<root>/sys/devices/system/cpu/cpu0/cache/index*`` (per instance)."""
    caches: list[CacheLevel] = []
    base = root / "sys/devices/system/cpu/cpu0/cache"
    for index in sorted(base.glob("index*"), key=lambda p: int(p.name[5:] or 0)):
        level, kind, size = (_read(index / name) for name in ("level", "type", "size"))
        if level is None or kind is None or size is None:
            continue
        try:
            caches.append(CacheLevel(level=int(level), type=kind, size_bytes=parse_size(size),
                                     shared_cpu_list=_read(index / "shared_cpu_list")))
        except ValueError:
            continue  # a malformed entry is not worth failing the probe for
    return caches


def read_topology(root: Path = Path("/")) -> tuple[int, int] | None:
    """``(physical, logical)`` online cores from sysfs topology files, or None when absent."""
    base = root / "sys/devices/system/cpu"
    online_text = _read(base / "online")
    if online_text is not None:
        online = parse_cpu_list(online_text)
    else:
        online = {int(p.name[3:]) for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit()}
    cores: set[tuple[str, str, str]] = set()
    for cpu in online:
        topology = base / f"cpu{cpu}" / "topology"
        core_id = _read(topology / "core_id")
        if core_id is None:
            return None
        package = _read(topology / "physical_package_id") or "0"
        die = _read(topology / "die_id") or "0"
        cores.add((package, die, core_id))
    if not online or not cores:
        return None
    return len(cores), len(online)


def count_numa_nodes(root: Path = Path("/")) -> int:
    """Number of NUMA nodes in ``<root>/sys/devices/system/node`` (1 when sysfs has none)."""
    nodes = [p for p in (root / "sys/devices/system/node").glob("node*") if p.name[4:].isdigit()]
    return max(1, len(nodes))


def cgroup_dirs(proc_self_cgroup: str, controller: str, root: Path = Path("/")) -> list[Path]:
    """The cgroup folders governing ``controller`` for this process, innermost first.

    ``proc_self_cgroup`` is the text of ``/proc/self/cgroup``. A v1 hierarchy carrying the controller
    wins over the v2 unified one (hybrid systems keep the controllers in v1). Each folder from the
    process's own cgroup up to the mount point is returned when it exists: inside a container the
    own path is often not visible and the mount point itself is the container's cgroup.
    """
    mounts: list[tuple[Path, str]] = []
    unified: list[tuple[Path, str]] = []
    cgroup_root = root / "sys/fs/cgroup"
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified += [(cgroup_root, path), (cgroup_root / "unified", path)]
        elif controller in controllers.split(","):
            mounts += [(cgroup_root / controller, path), (cgroup_root / controllers, path)]
    for mount, path in mounts or unified:
        if not mount.is_dir():
            continue
        found: list[Path] = []
        current = mount / path.strip("/")
        while True:
            if current.is_dir():
                found.append(current)
            if current == mount or mount not in current.parents:
                break
            current = current.parent
        if found:
            return found
    return []


def cgroup_cpu_quota(proc_self_cgroup: str, root: Path = Path("/")) -> float | None:
    """The cgroup CPU quota in cores (``cpu.max`` or ``cpu.cfs_quota_us``/``period``), None if unlimited.

    The smallest quota from the process's cgroup up to the root applies.
    """
    quotas: list[float] = []
    for folder in cgroup_dirs(proc_self_cgroup, "cpu", root):
        v2 = _read(folder / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota != "max" and period:
                quotas.append(int(quota) / int(period))
            continue
        quota_us, period_us = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota_us is not None and period_us is not None and int(quota_us) > 0 and int(period_us) > 0:
            quotas.append(int(quota_us) / int(period_us))
    return min(quotas) if quotas else None


def usable_core_count(affinity: int, quota_cores: float | None) -> int:
    """Cores a process may keep busy: its affinity, limited by a CPU quota rounded up."""
    if quota_cores is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota_cores - 1e-9)))


def linux_cpu_info(cpuinfo_text: str, proc_self_cgroup: str, *, root: Path = Path("/"),
                   affinity: int | None = None, architecture: str = "") -> CpuInfo:
    """Build ``CpuInfo`` from ``/proc/cpuinfo`` contents, ``/proc/self/cgroup`` contents and a sysfs root.

    ``affinity`` is the number of CPUs this process may run on (default: all logical cores).
    """
    facts = parse_cpuinfo(cpuinfo_text)
    topology = read_topology(root)
    if topology is not None:
        physical, logical = topology
    else:
        logical = facts.logical_cores or os.cpu_count() or 1
        physical = facts.physical_cores or logical
    frequency = facts.frequency_mhz
    if frequency is None:
        max_khz = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        frequency = int(max_khz) / 1000 if max_khz and max_khz.isdigit() else None
    architecture = architecture or platform.machine()
    features = facts.flags + (["asimd"] if architecture in {"aarch64", "arm64"} else [])
    quota = cgroup_cpu_quota(proc_self_cgroup, root)
    return CpuInfo(
        architecture=architecture,
        vendor=facts.vendor,
        brand=facts.brand,
        features=canonical_features(features),
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable_core_count(min(affinity or logical, logical), quota),
        caches=read_caches(root),
        numa_nodes=count_numa_nodes(root),
        frequency_mhz=frequency,
    )


def sysctl_cpu_info(values: dict[str, str], *, architecture: str, affinity: int | None = None) -> CpuInfo:
    """Build ``CpuInfo`` from macOS ``sysctl`` values (see ``apple.parse_sysctl``)."""
    flags: list[str] = [feature for key, feature in SYSCTL_FEATURES.items() if values.get(key, "0").strip() == "1"]
    # Intel Macs list their features in machdep.cpu.features / leaf7_features.
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features", "machdep.cpu.extfeatures"):
        flags += values.get(key, "").split()
    if architecture == "arm64":
        flags.append("asimd")  # every arm64 CPU has Advanced SIMD
    logical = _int_auto(values.get("hw.logicalcpu", "")) or os.cpu_count() or 1
    physical = _int_auto(values.get("hw.physicalcpu", "")) or logical
    caches: list[CacheLevel] = []
    # Apple silicon reports the performance cores' caches under hw.perflevel0.*.
    for level, kind, keys in ((1, "Data", ("hw.perflevel0.l1dcachesize", "hw.l1dcachesize")),
                              (1, "Instruction", ("hw.perflevel0.l1icachesize", "hw.l1icachesize")),
                              (2, "Unified", ("hw.perflevel0.l2cachesize", "hw.l2cachesize")),
                              (3, "Unified", ("hw.l3cachesize",))):
        size = next((_int_auto(values[k]) for k in keys if _int_auto(values.get(k, ""))), None)
        if size:
            caches.append(CacheLevel(level=level, type=kind, size_bytes=size))
    frequency = _int_auto(values.get("hw.cpufrequency_max", "")) or _int_auto(values.get("hw.cpufrequency", ""))
    vendor = values.get("machdep.cpu.vendor", "Apple" if architecture == "arm64" else "")
    return CpuInfo(
        architecture=architecture,
        vendor=vendor,
        brand=values.get("machdep.cpu.brand_string", ""),
        features=canonical_features(flags),
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable_core_count(min(affinity or logical, logical), None),
        caches=caches,
        numa_nodes=1,
        frequency_mhz=frequency / 1e6 if frequency else None,
    )


def py_cpuinfo_cpu_info(info: dict[str, object], *, logical: int, physical: int | None,
                        affinity: int | None = None, frequency_mhz: float | None = None) -> CpuInfo:
    """Build ``CpuInfo`` from ``cpuinfo.get_cpu_info()`` output (caches left out: py-cpuinfo's are wrong)."""
    flags = info.get("flags") or []
    hz = info.get("hz_actual") or info.get("hz_advertised")
    if frequency_mhz is None and isinstance(hz, (list, tuple)) and hz and isinstance(hz[0], int) and hz[0] > 0:
        frequency_mhz = hz[0] / 1e6
    return CpuInfo(
        architecture=str(info.get("arch_string_raw") or platform.machine()),
        vendor=str(info.get("vendor_id_raw") or ""),
        brand=str(info.get("brand_raw") or ""),
        features=canonical_features(str(f) for f in flags) if isinstance(flags, list) else [],
        physical_cores=physical or logical,
        logical_cores=logical,
        usable_cores=usable_core_count(min(affinity or logical, logical), None),
        numa_nodes=1,
        frequency_mhz=frequency_mhz,
    )


def process_affinity() -> int | None:
    """How many CPUs this process may run on, where the OS says (Linux, Windows via psutil)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    try:
        import psutil

        return len(psutil.Process().cpu_affinity() or []) or None
    except (ImportError, AttributeError, OSError):
        return None  # macOS has no affinity API


def usable_cores_here() -> int:
    """This process's usable core count, cheaply (no py-cpuinfo): affinity and cgroup quota applied."""
    logical = os.cpu_count() or 1
    affinity = process_affinity() or logical
    quota = cgroup_cpu_quota(_read(Path("/proc/self/cgroup")) or "") if sys.platform.startswith("linux") else None
    return usable_core_count(min(affinity, logical), quota)


def largest_cache_bytes_here() -> int | None:
    """Size of this machine's largest CPU cache instance (sysfs on Linux, sysctl on macOS)."""
    if sys.platform.startswith("linux"):
        sizes = [c.size_bytes for c in read_caches()]
        return max(sizes) if sizes else None
    if sys.platform == "darwin":
        from autotune.probe.apple import read_sysctl

        values = read_sysctl(["hw.l3cachesize", "hw.l2cachesize", "hw.perflevel0.l2cachesize"])
        sizes = [s for s in (_int_auto(v) for v in values.values()) if s]
        return max(sizes) if sizes else None
    return None


def this_cpu() -> CpuInfo:
    """Probe the CPU of the machine running this code."""
    machine = platform.machine()
    if sys.platform.startswith("linux") and Path("/proc/cpuinfo").exists():
        return linux_cpu_info(_read(Path("/proc/cpuinfo")) or "", _read(Path("/proc/self/cgroup")) or "",
                              affinity=process_affinity(), architecture=machine)
    if sys.platform == "darwin":
        from autotune.probe.apple import read_sysctl

        return sysctl_cpu_info(read_sysctl(["hw", "machdep.cpu"]), architecture=machine,
                               affinity=process_affinity())
    # Elsewhere (Windows, BSD): py-cpuinfo is slow but the only portable source of ISA flags.
    import cpuinfo
    import psutil

    frequency = psutil.cpu_freq()
    return py_cpuinfo_cpu_info(cpuinfo.get_cpu_info(), logical=psutil.cpu_count() or 1,
                               physical=psutil.cpu_count(logical=False), affinity=process_affinity(),
                               frequency_mhz=(frequency.max or frequency.current) if frequency else None)


@hookimpl
def autotune_hardware_facts() -> Iterator[HardwareFact]:
    """Contribute this machine's ``CpuInfo``."""
    yield this_cpu()


def _read(path: Path) -> str | None:
    """A small kernel file's stripped text, or None when it is missing or unreadable."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int_auto(text: str) -> int | None:
    """An integer in decimal or 0x-hex, or None."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
