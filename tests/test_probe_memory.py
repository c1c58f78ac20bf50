"""The memory probe's parsers: /proc/meminfo and cgroup v1/v2 limits, from real captures and fake trees."""

from __future__ import annotations

from pathlib import Path

from autotune.probe import memory
from autotune.testing.captures import sections, write_text

FIXTURES = Path(__file__).parent / "fixtures" / "hardware"
XEON = FIXTURES / "xeon-16c-h200"
EPYC = FIXTURES / "epyc-2c-kvm"
GIB = 2**30



def cgroup_capture(machine: Path, root: Path) -> str:
    """Write the capture's cgroup files under ``root``; return its ``/proc/self/cgroup`` lines."""
    proc_lines = []
    for line in sections(machine)["cgroup"].splitlines():
        if line.startswith("/"):
            path, _, value = line.partition(": ")
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(value + "\n")
        else:
            proc_lines.append(line)
    return "\n".join(proc_lines)



def test_parse_meminfo_scales_kb() -> None:
    values = memory.parse_meminfo(sections(EPYC)["meminfo"])
    assert values["MemTotal"] == 24684084 * 1024
    assert values["MemAvailable"] == 23614552 * 1024
    assert values["HugePages_Total"] == 0  # a count, not kB
    assert values["SwapTotal"] == 0


def test_epyc_unlimited_cgroup_v1(tmp_path: Path) -> None:
    proc = cgroup_capture(EPYC, tmp_path)
    assert memory.cgroup_memory_limit(proc, tmp_path) is None  # 9223372036854771712 means no limit
    info = memory.memory_info(sections(EPYC)["meminfo"], proc, tmp_path)
    assert info.cgroup_limit_bytes is None
    assert info.total_bytes == info.limit_bytes == 24684084 * 1024
    assert info.available_bytes == 23614552 * 1024
    assert info.swap_bytes == 0


def test_xeon_cgroup_v2_without_memory_limit(tmp_path: Path) -> None:
    proc = cgroup_capture(XEON, tmp_path)
    assert proc.strip() == "0::/sandbox"
    info = memory.memory_info(sections(XEON)["meminfo"], proc, tmp_path)
    assert info.cgroup_limit_bytes is None
    assert info.limit_bytes == info.total_bytes == 131981020 * 1024


def test_cgroup_v2_limit_caps_limit_and_available(tmp_path: Path) -> None:
    folder = tmp_path / "sys/fs/cgroup"
    write_text(folder / "memory.max", str(2 * GIB))
    write_text(folder / "memory.current", str(GIB))
    write_text(folder / "memory.stat", f"anon 536870912\nfile 536870912\ninactive_file {GIB // 4}\nactive_file 0")
    # /sandbox is not visible inside the container's cgroup namespace: the mount point is used.
    info = memory.memory_info(sections(XEON)["meminfo"], "0::/sandbox\n", tmp_path)
    assert info.cgroup_limit_bytes == info.limit_bytes == 2 * GIB
    assert info.total_bytes == 131981020 * 1024
    # Working set = 1 GiB used - 0.25 GiB reclaimable cache; 2 GiB limit leaves 1.25 GiB.
    assert info.available_bytes == 2 * GIB - (GIB - GIB // 4)


def test_cgroup_v2_max_means_unlimited(tmp_path: Path) -> None:
    write_text(tmp_path / "sys/fs/cgroup/memory.max", "max")
    write_text(tmp_path / "sys/fs/cgroup/memory.current", "123")
    info = memory.memory_info(sections(EPYC)["meminfo"], "0::/\n", tmp_path)
    assert info.cgroup_limit_bytes is None and info.available_bytes == 23614552 * 1024


def test_cgroup_v1_nested_limit(tmp_path: Path) -> None:
    mount = tmp_path / "sys/fs/cgroup/memory"
    write_text(mount / "memory.limit_in_bytes", "9223372036854771712")
    write_text(mount / "docker/abc/memory.limit_in_bytes", str(GIB // 2))
    write_text(mount / "docker/abc/memory.usage_in_bytes", str(GIB // 8))
    proc = "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n"
    assert memory.cgroup_memory_limit(proc, tmp_path) == GIB // 2
    info = memory.memory_info(sections(EPYC)["meminfo"], proc, tmp_path)
    assert info.limit_bytes == GIB // 2 and info.available_bytes == GIB // 2 - GIB // 8


def test_limit_larger_than_ram_leaves_ram_as_the_limit(tmp_path: Path) -> None:
    write_text(tmp_path / "sys/fs/cgroup/memory.max", str(64 * GIB))
    info = memory.memory_info(sections(EPYC)["meminfo"], "0::/\n", tmp_path)
    assert info.cgroup_limit_bytes == 64 * GIB
    assert info.limit_bytes == info.total_bytes == 24684084 * 1024


def test_this_machine_memory_is_sane() -> None:
    info = memory.this_memory()
    assert 0 < info.limit_bytes <= info.total_bytes
    assert 0 < info.available_bytes <= info.total_bytes
    assert memory.available_memory_bytes() > 0
