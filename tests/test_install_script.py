"""The llama.cpp set-up script: its wheel cache is keyed on the build flags, so no wheel is reused across flags.

A stand-in for pip records what the script asks of it and writes an empty wheel, so the test runs in
milliseconds instead of compiling llama.cpp.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "install-llama-cpp-python.sh"

FAKE_PIP = """#!/usr/bin/env bash
echo "pip $* | CMAKE_ARGS=$CMAKE_ARGS" >> "$PIP_LOG"
if [ "$1" = wheel ]; then
    while [ $# -gt 0 ]; do [ "$1" = -w ] && touch "$2/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"; shift; done
fi
"""


def install(tmp_path: Path, extra: str = "") -> tuple[str, list[str]]:
    pip = tmp_path / "pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)
    log = tmp_path / "pip.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PIP_LOG": str(log), "AUTOTUNE_WHEEL_CACHE": str(tmp_path / "wheels"),
           "AUTOTUNE_EXTRA_CMAKE_ARGS": extra}
    result = subprocess.run(["bash", str(SCRIPT), str(pip)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout, log.read_text().splitlines()


@pytest.mark.skipif(platform.system() == "Windows", reason="a bash script")
def test_wheels_are_cached_per_build_flags_and_never_reused_across_them(tmp_path: Path) -> None:
    first, calls = install(tmp_path)
    assert "building llama-cpp-python" in first and calls[0].startswith("pip wheel") and "--no-cache-dir" in calls[0]
    if platform.machine() == "x86_64":
        assert "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in calls[0]  # native minus AMX
    assert "--force-reinstall" in calls[-1]  # replaces a wheel pip's own cache may have put there

    again, calls = install(tmp_path)
    assert "reusing the wheel built for this CPU and these flags" in again and not any("wheel" in c.split()[1] for c in calls)

    other, calls = install(tmp_path, extra="-DGGML_CUDA=ON")
    assert "building" in other and "-DGGML_CUDA=ON" in calls[0]
    built = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert len(built) == 2 and all((tmp_path / "wheels" / name / "BUILD-INFO").exists() for name in built)
