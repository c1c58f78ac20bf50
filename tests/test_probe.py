"""probe(): folding plugin facts into Hardware, the cache, the JSON override, rendering, the real machine."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotune.errors import AutotuneError
from autotune.hardware import Accelerator, CacheLevel, CpuInfo, Hardware, HardwareFact, MemoryBandwidth, MemoryInfo
from autotune.hookspecs import hookimpl
from autotune.plugins.manager import PluginManager, get_plugin_manager
from autotune.probe import cpu as cpu_probe
from autotune.probe import machine as probe_module
from autotune.probe import memory as memory_probe
from autotune.probe.machine import collect, probe, render_hardware
from autotune.testing.conformance import example_hardware

GIB = 2**30


def xeon_like_cpu(brand: str = "Intel(R) Xeon(R) Processor") -> CpuInfo:
    return CpuInfo(architecture="x86_64", vendor="GenuineIntel", brand=brand,
                   features=["amx_int8", "amx_tile", "avx2", "avx512f", "avx_vnni"],
                   physical_cores=16, logical_cores=16, usable_cores=16,
                   caches=[CacheLevel(level=3, type="Unified", size_bytes=300 * 2**20, shared_cpu_list="0-15")])


def h200(index: str = "0") -> Accelerator:
    return Accelerator(kind="cuda", name="NVIDIA H200", memory_bytes=143771 * 2**20,
                       details={"index": index, "driver": "580.159.04", "compute_capability": "9.0"})


class FakeProbe:
    """An inline plugin yielding fixed facts; counts its calls to tell cached from fresh probes."""

    def __init__(self, facts: list[HardwareFact]) -> None:
        self.facts = facts
        self.calls = 0

    @hookimpl
    def autotune_hardware_facts(self) -> Iterator[HardwareFact]:
        self.calls += 1
        yield from self.facts


class BrokenProbe:
    @hookimpl
    def autotune_hardware_facts(self) -> Iterator[HardwareFact]:
        raise RuntimeError("sensor on fire")
        yield  # pragma: no cover - makes this a generator like real probes


def manager_with(*plugins: object) -> PluginManager:
    manager = PluginManager()
    for number, plugin in enumerate(plugins):
        manager.register(plugin, f"fake-{number}")
    return manager


def standard_facts() -> list[HardwareFact]:
    return [xeon_like_cpu(),
            MemoryInfo(total_bytes=128 * GIB, available_bytes=120 * GIB, limit_bytes=128 * GIB),
            MemoryBandwidth(all_threads_bytes_per_s=150e9, one_thread_bytes_per_s=20e9, threads=16),
            h200()]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOTUNE_HARDWARE_JSON", raising=False)
    return tmp_path / "cache"


def test_collect_folds_facts() -> None:
    duplicate = FakeProbe([h200(), h200("1"), Accelerator(kind="openvino", name="NPU")])
    hw = collect(manager_with(FakeProbe(standard_facts()), duplicate))
    assert hw.cpu.brand == "Intel(R) Xeon(R) Processor"
    assert hw.memory.bandwidth_bytes_per_s == 150e9 and hw.memory.bandwidth_1thread_bytes_per_s == 20e9
    assert [(a.kind, a.details.get("index")) for a in hw.accelerators] == [("cuda", "0"), ("cuda", "1"), ("openvino", None)]
    assert hw.has_gpu() and hw.probe_warnings == [] and hw.os


def test_first_cpu_and_memory_win() -> None:
    later = [xeon_like_cpu("Other"), MemoryInfo(total_bytes=GIB, available_bytes=GIB, limit_bytes=GIB)]
    hw = collect(manager_with(FakeProbe(standard_facts() + later)))
    assert hw.cpu.brand == "Intel(R) Xeon(R) Processor" and hw.memory.total_bytes == 128 * GIB


class OverridingCpuProbe:
    """What the hookspec tells a plugin to do to replace the built-in CPU probe."""

    @hookimpl(tryfirst=True)
    def autotune_hardware_facts(self) -> Iterator[HardwareFact]:
        yield xeon_like_cpu("Overridden")


def test_tryfirst_plugin_overrides_the_builtin_cpu_probe() -> None:
    manager = get_plugin_manager(entrypoints=False)
    manager.register(OverridingCpuProbe(), "override")
    hw = collect(manager, measure_bandwidth=False)
    assert hw.cpu.brand == "Overridden"
    assert hw.memory.total_bytes > 0 and hw.memory.bandwidth_bytes_per_s is None


def test_broken_probe_is_reported_and_skipped() -> None:
    hw = collect(manager_with(BrokenProbe(), FakeProbe(standard_facts())))
    assert hw.cpu.physical_cores == 16
    assert len(hw.probe_warnings) == 1 and "sensor on fire" in hw.probe_warnings[0]


def test_no_cpu_or_memory_facts_fall_back_to_psutil() -> None:
    hw = collect(manager_with(BrokenProbe(), FakeProbe([h200()])))
    assert hw.cpu.logical_cores >= 1 and 1 <= hw.cpu.usable_cores <= hw.cpu.logical_cores
    assert hw.memory.limit_bytes == hw.memory.total_bytes > 0
    assert any("no CPU facts" in w for w in hw.probe_warnings)
    assert any("no memory facts" in w for w in hw.probe_warnings)
    assert hw.accelerators == [h200()]


def test_fingerprint_ignores_available_memory_and_bandwidth() -> None:
    hw = collect(manager_with(FakeProbe(standard_facts())))
    changed = hw.model_copy(update={"memory": hw.memory.model_copy(update={
        "available_bytes": 3 * GIB, "bandwidth_bytes_per_s": 99e9, "bandwidth_1thread_bytes_per_s": 9e9})})
    assert changed.fingerprint == hw.fingerprint
    fewer_cores = hw.model_copy(update={"cpu": hw.cpu.model_copy(update={"usable_cores": 2})})
    assert fewer_cores.fingerprint != hw.fingerprint


def test_cache_round_trip(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeProbe(standard_facts())
    monkeypatch.setattr(memory_probe, "this_memory",
                        lambda: MemoryInfo(total_bytes=128 * GIB, available_bytes=120 * GIB, limit_bytes=128 * GIB))
    monkeypatch.setattr(cpu_probe, "usable_cores_here", lambda: 16)
    first = probe(manager_with(fake))
    assert fake.calls == 1 and (isolated_cache / "probe.json").exists()

    # The same machine, now inside a container: a 600 MiB cgroup limit and 2 CPUs of quota.
    monkeypatch.setattr(memory_probe, "this_memory",
                        lambda: MemoryInfo(total_bytes=128 * GIB, available_bytes=500 * 2**20,
                                           cgroup_limit_bytes=600 * 2**20, limit_bytes=600 * 2**20))
    monkeypatch.setattr(cpu_probe, "usable_cores_here", lambda: 2)
    again = probe(manager_with(fake))
    assert fake.calls == 1  # served from the cache
    # but what changes under a running system is read fresh, never from the cache
    assert again.memory.cgroup_limit_bytes == again.memory.limit_bytes == 600 * 2**20
    assert again.memory.available_bytes == 500 * 2**20 and again.cpu.usable_cores == 2
    assert again.memory.bandwidth_bytes_per_s == first.memory.bandwidth_bytes_per_s == 150e9
    assert again.accelerators == first.accelerators
    assert again.fingerprint != first.fingerprint  # a 600 MiB, 2-core device measures differently

    probe(manager_with(fake), refresh=True)
    assert fake.calls == 2


def test_stale_or_corrupt_cache_reprobes(isolated_cache: Path) -> None:
    fake = FakeProbe(standard_facts())
    probe(manager_with(fake))
    cache_file = isolated_cache / "probe.json"
    stored = json.loads(cache_file.read_text())
    stored["key"]["boot_id"] = "another boot"
    cache_file.write_text(json.dumps(stored))
    probe(manager_with(fake))
    assert fake.calls == 2
    cache_file.write_text("{not json")
    probe(manager_with(fake))
    assert fake.calls == 3


def test_measure_bandwidth_false_skips_the_builtin_benchmark(isolated_cache: Path) -> None:
    from autotune.probe import bandwidth

    fake = FakeProbe(standard_facts()[:2])
    manager = manager_with(fake)
    manager.register(bandwidth, "builtin-bandwidth", builtin=True)
    hw = probe(manager, measure_bandwidth=False)
    assert hw.memory.bandwidth_bytes_per_s is None and fake.calls == 1
    probe(manager, measure_bandwidth=False)
    assert fake.calls == 1  # a cache without bandwidth is good enough when none is wanted
    hw = probe(manager)  # ... but not when bandwidth is wanted
    assert fake.calls == 2 and hw.memory.bandwidth_bytes_per_s and hw.memory.bandwidth_bytes_per_s > 0


def test_hardware_json_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = example_hardware(cores=4, memory_gib=8)
    saved = tmp_path / "other-machine.json"
    saved.write_text(expected.model_dump_json())  # includes the computed fingerprint
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(saved))
    fake = FakeProbe(standard_facts())
    hw = probe(manager_with(fake))
    assert fake.calls == 0
    assert hw == expected and hw.fingerprint == expected.fingerprint


def test_hardware_json_override_accepts_the_cache_file(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = probe(manager_with(FakeProbe(standard_facts())))
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(isolated_cache / "probe.json"))
    assert probe().fingerprint == original.fingerprint


def test_bad_hardware_json_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(tmp_path / "missing.json"))
    with pytest.raises(AutotuneError, match="hardware JSON .*missing.json not found"):
        probe()
    (tmp_path / "bad.json").write_text(json.dumps({"cpu": {"architecture": "x86_64"}}))
    monkeypatch.setenv("AUTOTUNE_HARDWARE_JSON", str(tmp_path / "bad.json"))
    with pytest.raises(AutotuneError, match="not a valid hardware description"):
        probe()


def test_render_hardware() -> None:
    hw = collect(manager_with(FakeProbe(standard_facts())))
    text = render_hardware(hw)
    lines = text.splitlines()
    assert lines[0].startswith("CPU") and "Intel(R) Xeon(R) Processor" in lines[0]
    assert "amx_tile" in text and "16 physical, 16 logical, 16 usable" in text
    assert "L3 300 MiB" in text and "128 GiB total" in text and "no cgroup limit" in text
    assert "20.0 GB/s one thread, 150.0 GB/s 16 threads" in text
    assert "cuda: NVIDIA H200, 140.4 GiB" in text and hw.fingerprint in text
    # Values start in one column.
    assert len({len(m.group(1)) for line in lines if (m := re.match(r"(\S.*?\s{2,})\S", line))}) == 1


def test_render_shows_cgroup_limit_and_warnings() -> None:
    hw = example_hardware().model_copy(update={"probe_warnings": ["plugin 'x' failed"]})
    hw = hw.model_copy(update={"memory": hw.memory.model_copy(update={"cgroup_limit_bytes": 2 * GIB, "limit_bytes": 2 * GIB})})
    text = render_hardware(hw)
    assert "cgroup limit 2 GiB" in text and "usable limit 2 GiB" in text
    assert "Accelerators  none" in text and "plugin 'x' failed" in text


def test_builtin_probes_are_plugins() -> None:
    manager = get_plugin_manager(entrypoints=False)
    for name in ("cpu", "memory", "bandwidth", "nvidia", "apple"):
        record = manager.records[f"builtin-{name}"]
        assert record.error is None


def test_real_probe_on_this_machine() -> None:
    hw = probe(get_plugin_manager(entrypoints=False), refresh=True)
    cpu, memory = hw.cpu, hw.memory
    assert 1 <= cpu.usable_cores <= cpu.logical_cores and 1 <= cpu.physical_cores <= cpu.logical_cores
    assert cpu.architecture and cpu.features == sorted(cpu.features)
    assert 0 < memory.limit_bytes <= memory.total_bytes
    assert 0 < memory.available_bytes <= memory.total_bytes
    assert memory.bandwidth_bytes_per_s and memory.bandwidth_bytes_per_s > 0
    assert memory.bandwidth_1thread_bytes_per_s and memory.bandwidth_1thread_bytes_per_s > 0
    assert re.fullmatch(r"[0-9a-f]{16}", hw.fingerprint) and hw.probe_warnings == []
    assert Hardware.model_validate(json.loads(hw.model_dump_json(exclude={"fingerprint"}))) == hw
    assert probe_module.render_hardware(hw)
