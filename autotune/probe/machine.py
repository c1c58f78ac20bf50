"""Probing the machine: hardware facts from every plugin folded into one cached ``Hardware``.

The built-in probes (``autotune.probe.*``) and any plugin contribute facts through the
``autotune_hardware_facts`` hook. The result is cached in ``cache_dir()/probe.json`` while the
machine has not rebooted (same boot id, kernel and host name). Only what cannot change under a
running system comes from the cache: facts that change without the hardware changing (cgroup
memory limit, available memory, CPU affinity and cgroup CPU quota) are read fresh on every call, so a
cache written outside a memory-limited container never hides the container's limit inside it.

``AUTOTUNE_HARDWARE_JSON=<file>`` replaces probing with a saved ``Hardware`` JSON, for tests and
for tuning on behalf of another machine.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

from autotune.budget import format_bytes
from autotune.errors import AutotuneError, ForeignHardware
from autotune.files import UnreadableFile, read_json
from autotune.hardware import NOTABLE_FEATURES, Accelerator, CacheLevel, CpuInfo, Hardware, MemoryBandwidth, MemoryInfo
from autotune.plugins.manager import PluginManager, get_plugin_manager
from autotune.store.cache import cache_dir, write_json_atomically

log = logging.getLogger("autotune")

HARDWARE_JSON_ENV = "AUTOTUNE_HARDWARE_JSON"
MAX_HARDWARE_JSON_BYTES = 4 * 2**20
"""Largest hardware description read (a real one is a few kilobytes)."""
CACHE_FILE = "probe.json"
CACHE_VERSION = 1
"""Bumped when the probe learns new facts, so caches written by older code are ignored."""


def probe(manager: PluginManager | None = None, *, refresh: bool = False, measure_bandwidth: bool = True) -> Hardware:
    """This machine's ``Hardware``: from ``AUTOTUNE_HARDWARE_JSON``, the cache, or a fresh probe.

    ``refresh=True`` ignores the cache. ``measure_bandwidth=False`` skips the built-in copy
    benchmark (about 0.3 s); a cached result without bandwidth is then good enough, while one
    wanting bandwidth re-probes. ``manager`` defaults to one with built-ins and installed plugins.
    """
    override = os.environ.get(HARDWARE_JSON_ENV)
    if override:
        return load_hardware(Path(override))
    return probe_here(manager, refresh=refresh, measure_bandwidth=measure_bandwidth)


def probe_here(manager: PluginManager | None = None, *, refresh: bool = False, measure_bandwidth: bool = True) -> Hardware:
    """This machine's ``Hardware``, never a description from ``AUTOTUNE_HARDWARE_JSON`` (see ``probe``)."""
    key = cache_key()
    path = cache_dir() / CACHE_FILE
    if not refresh:
        cached = _read_cache(path, key)
        if cached is not None and (cached.memory.bandwidth_bytes_per_s is not None or not measure_bandwidth):
            return with_fresh_limits(cached)

    hardware = collect(manager or get_plugin_manager(), measure_bandwidth=measure_bandwidth)
    _write_cache(path, key, hardware)
    return hardware


def ensure_this_machine(hardware: Hardware) -> None:
    """Refuse to measure under another machine's name.

    A measurement made here but labelled with another machine's fingerprint would be wrong twice: the
    figures are this machine's, and with a shared study they would mix into the other machine's
    evidence. Planning for a machine not at hand needs no measuring and is not done here.
    """
    here = probe_here(measure_bandwidth=False)
    if here.fingerprint == hardware.fingerprint:
        return
    source = f"{HARDWARE_JSON_ENV} describes" if os.environ.get(HARDWARE_JSON_ENV) else "the hardware given describes"
    remedy = f"unset {HARDWARE_JSON_ENV} to tune here" if os.environ.get(HARDWARE_JSON_ENV) else "probe() this machine"
    raise ForeignHardware(
        f"{source} another machine ({_identity(hardware)}, fingerprint {hardware.fingerprint[:8]}) than this one "
        f"({_identity(here)}, fingerprint {here.fingerprint[:8]}); autotune measures only the machine it runs on — "
        f"{remedy}, or run autotune on that machine")


def _identity(hardware: Hardware) -> str:
    cpu = hardware.cpu
    gpus = f", {len(hardware.accelerators)} accelerator(s)" if hardware.accelerators else ""
    return f"{cpu.brand or cpu.architecture}, {cpu.usable_cores} usable cores, {format_bytes(hardware.memory.limit_bytes)}{gpus}"


def collect(manager: PluginManager, *, measure_bandwidth: bool = True) -> Hardware:
    """Ask every plugin for hardware facts and fold them into one ``Hardware`` (no cache).

    The first ``CpuInfo``, ``MemoryInfo`` and ``MemoryBandwidth`` win; accelerators from all
    plugins are kept, one per (kind, name, index). Without CPU or memory facts (every probe
    failed or was disabled) psutil's minimal facts stand in and a warning says so.
    """
    facts = manager.hardware_facts(measure_bandwidth=measure_bandwidth)
    # The manager records each failure once, so a reused manager's earlier failures count too.
    warnings = [w for w in manager.warnings if "autotune_hardware_facts" in w]

    cpu: CpuInfo | None = None
    memory: MemoryInfo | None = None
    bandwidth: MemoryBandwidth | None = None
    accelerators: dict[tuple[str, str, str | None], Accelerator] = {}
    for fact in facts:
        if isinstance(fact, CpuInfo):
            cpu = cpu or fact
        elif isinstance(fact, MemoryInfo):
            memory = memory or fact
        elif isinstance(fact, MemoryBandwidth):
            bandwidth = bandwidth or fact
        elif isinstance(fact, Accelerator):
            accelerators.setdefault((fact.kind, fact.name, fact.details.get("index")), fact)
        else:
            warnings.append(f"a hardware probe yielded {type(fact).__name__!r}, which is not a hardware fact; ignored")

    if cpu is None:
        cpu = _minimal_cpu()
        warnings.append("no CPU facts from any probe plugin; using psutil's core counts without ISA features or caches")
    if memory is None:
        memory = _minimal_memory()
        warnings.append("no memory facts from any probe plugin; using psutil's totals without cgroup limits")
    if bandwidth is not None:
        memory = memory.model_copy(update={"bandwidth_bytes_per_s": bandwidth.all_threads_bytes_per_s,
                                           "bandwidth_1thread_bytes_per_s": bandwidth.one_thread_bytes_per_s})
    return Hardware(cpu=cpu, memory=memory, accelerators=list(accelerators.values()), os=os_description(),
                    probe_warnings=warnings)


def load_hardware(path: Path) -> Hardware:
    """A ``Hardware`` from a JSON file: a plain dump, or the probe cache (``probe.json``)."""
    try:  # bounded: AUTOTUNE_HARDWARE_JSON=/dev/zero filled the machine's memory, a FIFO hung the run
        data = read_json(path, "hardware JSON", MAX_HARDWARE_JSON_BYTES)
    except UnreadableFile as error:
        raise AutotuneError(f"{error}; point {HARDWARE_JSON_ENV} at a file written by `autotune probe --json`") from None
    if isinstance(data, dict) and isinstance(data.get("hardware"), dict):
        data = data["hardware"]
    try:
        return hardware_from_dict(data)
    except ValueError as error:
        first = str(error).splitlines()[1:3]
        raise AutotuneError(f"{str(path)!r} is not a valid hardware description ({'; '.join(first)}); "
                            "write one with `autotune probe --json > FILE`") from None


def hardware_from_dict(data: Any) -> Hardware:
    """Validate a ``Hardware`` dump; its stored ``fingerprint`` is dropped since it is always recomputed."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "fingerprint"}
    return Hardware.model_validate(data)


def cache_key() -> dict[str, Any]:
    """What must not change for a cached probe to stay valid: boot, kernel and host."""
    boot_id = _read_text(Path("/proc/sys/kernel/random/boot_id"))
    if boot_id is None:
        try:
            import psutil

            boot_id = str(psutil.boot_time())
        except (ImportError, OSError):
            boot_id = ""
    return {
        "version": CACHE_VERSION,
        "boot_id": boot_id,
        "host": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def os_description() -> str:
    """A short description of the operating system, e.g. ``Linux 6.8.0 (Ubuntu 24.04.3 LTS)``."""
    system, release = platform.system(), platform.release()
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]} (Darwin {release})"
    if system == "Linux":
        try:
            pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
        except OSError:
            pretty = None
        return f"Linux {release}" + (f" ({pretty})" if pretty else "")
    return f"{system} {release}".strip()


def render_hardware(hw: Hardware) -> str:
    """The human-readable text ``autotune probe`` prints: one aligned line per topic."""
    cpu, memory = hw.cpu, hw.memory
    identity = ", ".join(part for part in (cpu.vendor, cpu.architecture) if part)
    frequency = f", {cpu.frequency_mhz:.0f} MHz" if cpu.frequency_mhz else ""
    notable = [f for f in NOTABLE_FEATURES if f in cpu.features]
    cgroup = memory.cgroup_limit_bytes
    limit = f"cgroup limit {format_bytes(cgroup)}" if cgroup is not None else "no cgroup limit"
    lines = [
        ("CPU", f"{cpu.brand or 'unknown'} ({identity}{frequency})"),
        ("Features", f"{' '.join(notable) or 'none of note'} ({len(cpu.features)} flags in all)"),
        ("Cores", f"{cpu.physical_cores} physical, {cpu.logical_cores} logical, {cpu.usable_cores} usable"),
        ("Caches", ", ".join(_cache_text(c) for c in cpu.caches) or "unknown"),
        ("NUMA nodes", str(cpu.numa_nodes)),
        ("Memory", f"{format_bytes(memory.total_bytes)} total, {format_bytes(memory.available_bytes)} available, "
                   f"{limit}, usable limit {format_bytes(memory.limit_bytes)}"
                   + (f", swap {format_bytes(memory.swap_bytes)}" if memory.swap_bytes else ", no swap")),
        ("Bandwidth", _bandwidth_text(hw)),
    ]
    if hw.accelerators:
        for position, accelerator in enumerate(hw.accelerators):
            lines.append(("Accelerators" if position == 0 else "", _accelerator_text(accelerator)))
    else:
        lines.append(("Accelerators", "none"))
    lines += [("OS", hw.os or "unknown"), ("Fingerprint", hw.fingerprint)]
    for warning in hw.probe_warnings:
        lines.append(("Warning", warning))
    width = max(len(label) for label, _ in lines) + 2
    return "\n".join(f"{label:<{width}}{text}".rstrip() for label, text in lines)


def _cache_text(cache: CacheLevel) -> str:
    suffix = {"Data": "d", "Instruction": "i"}.get(cache.type, "")
    shared = f" shared by CPUs {cache.shared_cpu_list}" if cache.shared_cpu_list and cache.shared_cpu_list != "0" else ""
    return f"L{cache.level}{suffix} {format_bytes(cache.size_bytes)}{shared}"


def _bandwidth_text(hw: Hardware) -> str:
    memory = hw.memory
    if memory.bandwidth_bytes_per_s is None:
        return "not measured"
    one = (f"{memory.bandwidth_1thread_bytes_per_s / 1e9:.1f} GB/s one thread, "
           if memory.bandwidth_1thread_bytes_per_s else "")
    return f"{one}{memory.bandwidth_bytes_per_s / 1e9:.1f} GB/s {hw.cpu.usable_cores} threads (copy, read+write)"


def _accelerator_text(accelerator: Accelerator) -> str:
    memory = f", {format_bytes(accelerator.memory_bytes)}" if accelerator.memory_bytes else ""
    details = ", ".join(f"{k} {v}" for k, v in accelerator.details.items() if k != "index")
    return f"{accelerator.kind}: {accelerator.name}{memory}" + (f" ({details})" if details else "")


def _minimal_cpu() -> CpuInfo:
    import psutil

    logical = psutil.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return CpuInfo(architecture=platform.machine(), physical_cores=psutil.cpu_count(logical=False) or logical,
                   logical_cores=logical, usable_cores=min(usable, logical))


def _minimal_memory() -> MemoryInfo:
    import psutil

    virtual = psutil.virtual_memory()
    return MemoryInfo(total_bytes=virtual.total, available_bytes=virtual.available,
                      swap_bytes=psutil.swap_memory().total, limit_bytes=virtual.total)


def with_fresh_limits(hardware: Hardware) -> Hardware:
    """``hardware`` with the facts that change under a running system read again now.

    Memory limit (cgroup v1/v2), available memory, and usable cores (affinity, cgroup CPU quota) are
    cheap to read (a few small files) and must never come from a cache: the same machine inside and
    outside a container is the same hardware with different limits.
    """
    if os.environ.get(HARDWARE_JSON_ENV):
        return hardware  # a description of a machine, not this one: nothing here to re-read
    from autotune.probe import cpu as cpu_probe
    from autotune.probe import memory as memory_probe

    try:
        fresh = memory_probe.this_memory()
        usable = min(cpu_probe.usable_cores_here(), hardware.cpu.logical_cores)
    except (OSError, KeyError, ValueError) as error:  # the cached facts are better than no probe
        log.debug("could not re-read memory and CPU limits: %r", error)
        return hardware
    memory = hardware.memory.model_copy(update={
        "total_bytes": fresh.total_bytes, "available_bytes": fresh.available_bytes, "swap_bytes": fresh.swap_bytes,
        "cgroup_limit_bytes": fresh.cgroup_limit_bytes, "limit_bytes": fresh.limit_bytes})
    cpu = hardware.cpu.model_copy(update={"usable_cores": usable})
    return hardware.model_copy(update={"memory": memory, "cpu": cpu})


def _read_cache(path: Path, key: dict[str, Any]) -> Hardware | None:
    try:
        data = read_json(path, "probe cache", MAX_HARDWARE_JSON_BYTES)
        if data.get("key") != key:
            return None
        return hardware_from_dict(data["hardware"])
    except (UnreadableFile, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, stale, corrupt or odd (UnreadableFile is an AutotuneError): probe again


def _write_cache(path: Path, key: dict[str, Any], hardware: Hardware) -> None:
    if not write_json_atomically(path, {"key": key, "hardware": hardware.model_dump(mode="json")}):
        log.debug("could not cache the probe in %s", path)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


__all__ = ["collect", "cache_key", "hardware_from_dict", "load_hardware", "os_description", "probe", "render_hardware",
           "ensure_this_machine", "probe_here", "with_fresh_limits"]
