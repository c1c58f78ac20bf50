"""scripts/build-llama-server.sh: the CPU flags of the Python build, one build per key, ``--cached`` never builds.

Stand-ins for pip (an sdist holding an empty vendor/llama.cpp) and cmake (records its arguments, writes a
``llama-server`` that prints a version) make the test take milliseconds instead of compiling llama.cpp.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "build-llama-server.sh"

FAKE_PIP = """#!/usr/bin/env bash
echo "pip $*" >> "$TOOL_LOG"
case "$1" in
    show) echo "Name: llama_cpp_python"; echo "Version: 0.3.36" ;;
    download) while [ $# -gt 0 ]; do [ "$1" = -d ] && cp "$FAKE_SDIST" "$2/"; shift; done ;;
esac
"""

FAKE_CMAKE = """#!/usr/bin/env bash
printf 'cmake' >> "$TOOL_LOG"; printf ' [%s]' "$@" >> "$TOOL_LOG"; echo >> "$TOOL_LOG"
if [ "$1" = --build ]; then
    mkdir -p "$2/bin"
    printf '#!/bin/sh\\necho "version: fake"\\n' > "$2/bin/llama-server"
    chmod +x "$2/bin/llama-server"
fi
"""


def _tool(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def build(tmp_path: Path, *options: str, extra: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    tools = tmp_path / "tools"
    if not tools.exists():
        tools.mkdir()
        _tool(tools, "pip", FAKE_PIP)
        _tool(tools, "cmake", FAKE_CMAKE)
        source = tmp_path / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
        source.mkdir(parents=True)
        (source / "CMakeLists.txt").write_text("# stand-in\n")
        with tarfile.open(tmp_path / "llama_cpp_python-0.3.36.tar.gz", "w:gz") as sdist:
            sdist.add(tmp_path / "llama_cpp_python-0.3.36", arcname="llama_cpp_python-0.3.36")
    log = tmp_path / "tools.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "TOOL_LOG": str(log),
           "FAKE_SDIST": str(tmp_path / "llama_cpp_python-0.3.36.tar.gz"),
           "AUTOTUNE_LLAMA_SERVER_CACHE": str(tmp_path / "servers"), "AUTOTUNE_EXTRA_CMAKE_ARGS": extra}
    env.pop("LLAMA_CPP_PYTHON_VERSION", None)
    result = subprocess.run(["bash", str(SCRIPT), *options, str(tools / "pip")], capture_output=True, text=True,
                            env=env, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else []


@pytest.mark.skipif(platform.system() == "Windows", reason="a bash script")
def test_llama_server_is_built_with_the_python_builds_flags_once_per_key(tmp_path: Path) -> None:
    missing, _ = build(tmp_path, "--cached")
    assert missing.returncode == 3 and "no llama-server built" in missing.stderr and not missing.stdout

    first, calls = build(tmp_path)
    assert first.returncode == 0, first.stderr
    binary = Path(first.stdout.strip())  # the path, and nothing else, on stdout
    assert binary.name == "llama-server" and binary.is_file() and (binary.parent / "BUILD-INFO").is_file()
    assert binary.parent.name.startswith("0.3.36-")  # the installed version, asked of the given pip
    configure = next(c for c in calls if c.startswith("cmake") and "--build" not in c)
    assert "[-DGGML_NATIVE=ON]" in configure and "[-DBUILD_SHARED_LIBS=OFF]" in configure
    if platform.machine() == "x86_64":  # native minus AMX, each CMake flag one argument
        assert "[-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16]" in configure
    assert any("[--target] [llama-server]" in c for c in calls)

    again, calls = build(tmp_path)
    assert again.stdout == first.stdout and "reusing" in again.stderr
    assert not any(c.startswith(("cmake", "pip download")) for c in calls)
    cached, _ = build(tmp_path, "--cached")
    assert cached.returncode == 0 and cached.stdout == first.stdout

    other, calls = build(tmp_path, extra="-DGGML_AVX512=OFF")
    assert other.returncode == 0 and other.stdout != first.stdout
    assert any("[-DGGML_AVX512=OFF]" in c for c in calls)
    assert len(list((tmp_path / "servers").iterdir())) == 2
