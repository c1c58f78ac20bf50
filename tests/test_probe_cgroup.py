"""Facts that change without the hardware changing are read fresh: a real memory cgroup, a shared probe cache.

These tests create a child memory cgroup (v1 or v2) of the one the tests run in, which needs write
access to the cgroup file system (root in a container or VM); elsewhere they say why they skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LIMIT = 600 * 2**20


def own_memory_cgroup() -> tuple[Path, str] | None:
    """This process's memory cgroup folder and the name of its limit file (v1 or v2), if there is one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, relative = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / relative.lstrip("/")
            if folder.is_dir():
                return folder, "memory.limit_in_bytes"
        if controllers == "":
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                folder = root / relative.lstrip("/")
                enabled = (folder / "cgroup.subtree_control")
                if enabled.exists() and "memory" in enabled.read_text().split():
                    return folder, "memory.max"
    return None


@pytest.fixture
def limited_cgroup() -> Iterator[Path]:
    """A child memory cgroup limited to 600 MiB, removed afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("memory cgroups are a Linux feature")
    found = own_memory_cgroup()
    if found is None:
        pytest.skip("this process has no writable memory cgroup controller to nest a limited group in")
    parent, limit_file = found
    child = parent / f"autotune-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        (child / limit_file).write_text(str(LIMIT))
    except OSError as error:
        pytest.skip(f"cannot create a memory cgroup under {parent} ({error.strerror}); needs root or a delegated cgroup")
    try:
        yield child
    finally:
        try:
            child.rmdir()
        except OSError:
            pass


def probe_json(cache: Path, cgroup: Path | None = None) -> dict[str, object]:
    """``autotune probe --json`` as a user runs it, optionally started inside ``cgroup``."""
    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    result = subprocess.run([sys.executable, "-m", "autotune", "probe", "--json"], capture_output=True, text=True,
                            env={**os.environ, "AUTOTUNE_CACHE": str(cache)}, preexec_fn=enter, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["memory"]  # type: ignore[no-any-return]


def test_the_cached_probe_reports_a_memory_cgroups_limit_inside_it_and_not_outside(limited_cgroup: Path,
                                                                                 tmp_path: Path) -> None:
    inside = probe_json(tmp_path, limited_cgroup)  # a fresh probe inside the group writes the cache
    assert inside["cgroup_limit_bytes"] == LIMIT and inside["limit_bytes"] == LIMIT
    assert inside["available_bytes"] <= LIMIT  # type: ignore[operator]
    outside = probe_json(tmp_path)  # that cache, read outside: the group's limit must not leak out
    assert outside["cgroup_limit_bytes"] != LIMIT and outside["limit_bytes"] > LIMIT  # type: ignore[operator]
    assert outside["bandwidth_bytes_per_s"] == inside["bandwidth_bytes_per_s"]  # measured once, cached
    again = probe_json(tmp_path, limited_cgroup)  # and inside again, still without --refresh
    assert again["cgroup_limit_bytes"] == LIMIT and again["limit_bytes"] == LIMIT
