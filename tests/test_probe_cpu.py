"""The CPU probe's parsers, fed real captures from two machines through a fake sysfs tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.hardware import NOTABLE_FEATURES, CpuInfo
from autotune.probe import cpu
from autotune.testing import machines
from autotune.testing.captures import sections, write_text

FIXTURES = Path(__file__).parent / "fixtures" / "hardware"
XEON = FIXTURES / "xeon-16c-h200"
EPYC = FIXTURES / "epyc-2c-kvm"
XEON_AMX = FIXTURES / "xeon-2c-amx-kvm"



def proc_self_cgroup(machine: Path) -> str:
    """The ``/proc/self/cgroup`` lines of the capture's cgroup section (the rest are file values)."""
    return "\n".join(line for line in sections(machine)["cgroup"].splitlines() if not line.startswith("/"))


def fake_root(machine: Path, root: Path) -> Path:
    """A folder shaped like ``/`` holding the capture's sysfs caches, NUMA nodes and cgroup files."""
    return machines.fake_root(sections(machine), root)


def probe_capture(machine: Path, root: Path) -> CpuInfo:
    return cpu.linux_cpu_info((machine / "cpuinfo_first.txt").read_text(), proc_self_cgroup(machine),
                              root=fake_root(machine, root), architecture="x86_64")


def lscpu_flags(machine: Path) -> list[str]:
    line = next(text for text in sections(machine)["lscpu"].splitlines() if text.startswith("Flags:"))
    return line.split(":", 1)[1].split()


def test_xeon_capture(tmp_path: Path) -> None:
    info = probe_capture(XEON, tmp_path)
    assert info.vendor == "GenuineIntel" and info.brand == "Intel(R) Xeon(R) Processor"
    assert {"amx_tile", "amx_int8", "amx_bf16", "avx_vnni", "avx512_vnni", "avx512_bf16", "avx512f"} <= set(info.features)
    assert info.features == sorted(set(info.features)) == cpu.canonical_features(lscpu_flags(XEON))
    assert (info.physical_cores, info.logical_cores, info.usable_cores) == (16, 16, 16)
    l3 = [c for c in info.caches if c.level == 3]
    assert len(l3) == 1 and l3[0].size_bytes == 300 * 2**20 and l3[0].shared_cpu_list == "0-15"
    assert [(c.level, c.type) for c in info.caches] == [(1, "Data"), (1, "Instruction"), (2, "Unified"), (3, "Unified")]
    assert info.numa_nodes == 1
    assert info.frequency_mhz == 2100.0


def test_xeon_amx_guest_capture_matches_the_probe_taken_there(tmp_path: Path) -> None:
    info = probe_capture(XEON_AMX, tmp_path)
    assert {"amx_tile", "amx_int8", "amx_bf16", "avx_vnni", "avx512_vnni", "avx512_bf16", "avx512_fp16"} <= set(info.features)
    assert info.features == cpu.canonical_features(lscpu_flags(XEON_AMX))
    assert (info.physical_cores, info.logical_cores, info.usable_cores) == (2, 2, 2)
    # The `autotune probe --json` captured on that machine says the same, cache for cache.
    there = json.loads((XEON_AMX / "autotune_probe.json").read_text())["cpu"]
    assert info.model_dump(exclude={"frequency_mhz"}) == {k: v for k, v in there.items() if k != "frequency_mhz"}
    assert next(c for c in info.caches if c.level == 2).size_bytes == 2 * 2**20  # per core, not lscpu's sum


def test_epyc_capture(tmp_path: Path) -> None:
    info = probe_capture(EPYC, tmp_path)
    assert info.vendor == "AuthenticAMD"
    assert {"avx512_vnni", "avx512_bf16", "avx512bw", "avx2", "fma", "f16c", "sse4_2"} <= set(info.features)
    assert not {"amx_tile", "amx_int8", "amx_bf16", "avx_vnni"} & set(info.features)
    assert (info.physical_cores, info.logical_cores, info.usable_cores) == (2, 2, 2)
    l2 = next(c for c in info.caches if c.level == 2)
    assert l2.size_bytes == 2**20
    assert next(c for c in info.caches if c.level == 3).size_bytes == 32 * 2**20


def test_affinity_limits_usable_cores(tmp_path: Path) -> None:
    info = cpu.linux_cpu_info((XEON / "cpuinfo_first.txt").read_text(), proc_self_cgroup(XEON),
                              root=fake_root(XEON, tmp_path), affinity=4)
    assert (info.logical_cores, info.usable_cores) == (16, 4)


def test_py_cpuinfo_spellings_collapse() -> None:
    for machine in (XEON, EPYC):
        flags = json.loads((machine / "python_probe.json").read_text())["py_cpuinfo"]["flags"]
        assert "avx512vnni" in flags and "avx512_vnni" in flags  # the capture really has both
        features = cpu.canonical_features(flags)
        assert "avx512vnni" not in features and features.count("avx512_vnni") == 1
        proc = cpu.canonical_features(lscpu_flags(machine))
        assert set(NOTABLE_FEATURES) & set(features) == set(NOTABLE_FEATURES) & set(proc)


def test_py_cpuinfo_fallback_keeps_identity_but_not_caches() -> None:
    report = json.loads((EPYC / "python_probe.json").read_text())["py_cpuinfo"]
    info = cpu.py_cpuinfo_cpu_info(report, logical=2, physical=2)
    assert (info.vendor, info.brand, info.architecture) == ("AuthenticAMD", "AMD EPYC", "x86_64")
    assert info.caches == []  # py-cpuinfo's sizes are totals over cores, not per instance
    assert info.frequency_mhz == pytest.approx(2596.134)


ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svei8mm svebf16 i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd4f
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svei8mm svebf16 i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd4f
CPU revision\t: 1
"""


def test_arm_features_line(tmp_path: Path) -> None:
    facts = cpu.parse_cpuinfo(ARM_CPUINFO)
    assert facts.vendor == "ARM" and facts.brand == "ARM CPU part 0xd4f"
    assert facts.logical_cores == 2
    info = cpu.linux_cpu_info(ARM_CPUINFO, "0::/\n", root=tmp_path, architecture="aarch64")
    assert {"neon", "asimd", "dotprod", "i8mm", "sve", "sve2", "bf16"} <= set(info.features)
    assert "asimddp" not in info.features
    assert (info.logical_cores, info.usable_cores) == (2, 2)
    assert info.numa_nodes == 1 and info.caches == []


def test_arm64_always_has_simd_even_without_features(tmp_path: Path) -> None:
    info = cpu.linux_cpu_info("processor\t: 0\n", "", root=tmp_path, architecture="aarch64")
    assert {"asimd", "neon"} <= set(info.features)


def _topology(root: Path, cores: dict[int, tuple[int, int]], online: str) -> None:
    base = root / "sys/devices/system/cpu"
    base.mkdir(parents=True)
    (base / "online").write_text(online + "\n")
    for number, (package, core) in cores.items():
        topology = base / f"cpu{number}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")


def test_sysfs_topology_counts_hyperthreads_once(tmp_path: Path) -> None:
    # Two sockets, two cores each, two threads per core; core ids repeat across sockets.
    _topology(tmp_path, {n: (n // 4, (n // 2) % 2) for n in range(8)}, "0-7")
    assert cpu.read_topology(tmp_path) == (4, 8)
    info = cpu.linux_cpu_info((XEON / "cpuinfo_first.txt").read_text(), "", root=tmp_path, architecture="x86_64")
    assert (info.physical_cores, info.logical_cores) == (4, 8)



def test_cgroup_v2_cpu_max_rounds_up(tmp_path: Path) -> None:
    write_text(tmp_path / "sys/fs/cgroup/cpu.max", "150000 100000")
    assert cpu.cgroup_cpu_quota("0::/\n", tmp_path) == pytest.approx(1.5)
    assert cpu.usable_core_count(16, 1.5) == 2
    info = cpu.linux_cpu_info((XEON / "cpuinfo_first.txt").read_text(), "0::/\n", root=tmp_path)
    assert info.usable_cores == 2 and info.logical_cores == 16


def test_cgroup_v2_unlimited_and_nested(tmp_path: Path) -> None:
    write_text(tmp_path / "sys/fs/cgroup/cpu.max", "max 100000")
    assert cpu.cgroup_cpu_quota("0::/\n", tmp_path) is None
    # The process sits in /a/b; the stricter quota up the tree applies.
    write_text(tmp_path / "sys/fs/cgroup/a/cpu.max", "300000 100000")
    write_text(tmp_path / "sys/fs/cgroup/a/b/cpu.max", "max 100000")
    assert cpu.cgroup_cpu_quota("0::/a/b\n", tmp_path) == pytest.approx(3.0)


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    write_text(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000")
    write_text(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000")
    quota = cpu.cgroup_cpu_quota("2:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n0::/\n", tmp_path)
    assert quota == pytest.approx(2.5) and cpu.usable_core_count(8, quota) == 3
    # -1 means no quota (the EPYC capture).
    assert cpu.cgroup_cpu_quota(proc_self_cgroup(EPYC), fake_root(EPYC, tmp_path / "epyc")) is None


def test_cgroup_dirs_prefers_v1_controller_on_hybrid_systems(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/memory/sandbox").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified").mkdir(parents=True)
    dirs = cpu.cgroup_dirs("4:memory:/sandbox\n0::/\n", "memory", tmp_path)
    assert dirs == [tmp_path / "sys/fs/cgroup/memory/sandbox", tmp_path / "sys/fs/cgroup/memory"]


def test_parse_helpers() -> None:
    assert cpu.parse_cpu_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    assert cpu.parse_size("307200K") == 300 * 2**20
    assert cpu.parse_size("32M") == 32 * 2**20
    assert cpu.parse_size("65536") == 65536
    with pytest.raises(ValueError):
        cpu.parse_size("lots")


MAC_SYSCTL = {
    "machdep.cpu.brand_string": "Apple M2 Pro",
    "hw.physicalcpu": "10", "hw.logicalcpu": "10",
    "hw.optional.arm64": "1", "hw.optional.neon": "1", "hw.optional.AdvSIMD": "1",
    "hw.optional.arm.FEAT_DotProd": "1", "hw.optional.arm.FEAT_I8MM": "0", "hw.optional.arm.FEAT_BF16": "1",
    "hw.perflevel0.l1dcachesize": "131072", "hw.perflevel0.l2cachesize": "16777216", "hw.l1dcachesize": "65536",
}


def test_macos_sysctl_cpu() -> None:
    info = cpu.sysctl_cpu_info(MAC_SYSCTL, architecture="arm64")
    assert info.vendor == "Apple" and info.brand == "Apple M2 Pro"
    assert {"neon", "asimd", "dotprod", "bf16"} <= set(info.features) and "i8mm" not in info.features
    assert (info.physical_cores, info.logical_cores) == (10, 10)
    assert [(c.level, c.type, c.size_bytes) for c in info.caches] == [(1, "Data", 131072), (2, "Unified", 16777216)]


def test_this_machine_cpu_is_sane() -> None:
    info = cpu.this_cpu()
    assert 1 <= info.usable_cores <= info.logical_cores and 1 <= info.physical_cores <= info.logical_cores
    assert info.features == sorted(set(f.lower() for f in info.features))
