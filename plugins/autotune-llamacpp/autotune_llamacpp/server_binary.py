"""Which ``llama-server`` the ``llamacpp-server`` backend starts: one the user names, or the one built for this CPU.

The binary must run the llama.cpp that autotune measures everywhere else (the sources vendored in the installed
llama-cpp-python, compiled with this CPU's flags), so the plugin builds it from exactly those:
``server_build/build-llama-server.sh`` (shipped inside this package, with the ``cpu-flags.sh`` it shares with the
llama-cpp-python install; the checkout's ``scripts/`` links to them) caches one binary per llama-cpp-python
version, CPU flags and compiler. Order of precedence:

1. ``$AUTOTUNE_LLAMA_SERVER``: a binary the user names (their own build, a packaged one);
2. the cached build for this llama-cpp-python and CPU;
3. none yet: ``ensure_binary`` builds it (about 7 minutes on 2 cores), its progress on the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV = "AUTOTUNE_LLAMA_SERVER"
BUILD_SCRIPT = Path(__file__).parent / "server_build" / "build-llama-server.sh"
FIND_TIMEOUT_S = 60.0
BUILD_TOOLS = ("cmake", "c++", "tar")


class NoServerBinary(LookupError):
    """No llama-server can be found or built here (the message says what to do)."""


def named_binary() -> Path | None:
    """The binary ``$AUTOTUNE_LLAMA_SERVER`` names, or None when the variable is unset or empty."""
    named = os.environ.get(ENV, "").strip()
    return Path(named).expanduser() if named else None


def _llama_cpp_version() -> str:
    try:
        import llama_cpp
    except (ImportError, OSError):
        raise NoServerBinary(f"llama-cpp-python is not installed, so no llama-server can be built to match it; "
                             f"install it, or set {ENV} to a llama-server binary") from None
    return str(llama_cpp.__version__)


def _script_env(version: str) -> dict[str, str]:
    return {**os.environ, "LLAMA_CPP_PYTHON_VERSION": version}


def _pip() -> str:
    """The pip of this interpreter's environment (the build downloads llama-cpp-python's sources with it)."""
    beside = Path(sys.executable).parent / "pip"
    return str(beside) if beside.exists() else "pip"


_found: dict[str, Path] = {}
"""Builds found in this process, by llama-cpp-python version: the script hashes the CPU flags and compiler each time
(a tenth of a second), and the identity, availability and every measurement ask."""


def cached_binary() -> Path | None:
    """The build cached for this llama-cpp-python and CPU, or None when there is none yet."""
    version = _llama_cpp_version()
    known = _found.get(version)
    if known is not None and known.is_file():
        return known
    found = subprocess.run(["bash", str(BUILD_SCRIPT), "--cached", _pip()], capture_output=True, text=True,
                           timeout=FIND_TIMEOUT_S, env=_script_env(version), check=False)
    if found.returncode != 0 or not found.stdout.strip():
        return None  # not remembered: a build later in this process is found then
    _found[version] = Path(found.stdout.strip())
    return _found[version]


def find_binary() -> Path:
    """The llama-server to start (named or cached); ``NoServerBinary`` saying what to do when there is none."""
    named = named_binary()
    if named is not None:
        if not (named.is_file() and os.access(named, os.X_OK)):
            raise NoServerBinary(f"{ENV}={named} is not an executable file; point it at a llama-server binary")
        return named
    cached = cached_binary()
    if cached is None:
        raise NoServerBinary(f"no llama-server is built for llama-cpp-python {_llama_cpp_version()} on this CPU yet: "
                             f"`bash {BUILD_SCRIPT} {_pip()}` builds it (autotune run does on first need), or set "
                             f"{ENV} to one")
    return cached


def missing_build_tools() -> list[str]:
    """The tools a build needs that are not on PATH."""
    return [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]


def ensure_binary() -> Path:
    """The llama-server to start, built now when there is none (progress on the terminal, through stderr)."""
    try:
        return find_binary()
    except NoServerBinary:
        if named_binary() is not None:
            raise
    missing = missing_build_tools()
    if missing:
        raise NoServerBinary(f"no llama-server is built here and {', '.join(missing)} (needed to build it) is not "
                             f"installed; install it, or set {ENV} to a llama-server binary")
    version = _llama_cpp_version()
    print(f"autotune: building llama-server from llama-cpp-python {version}'s llama.cpp for this CPU, once "
          "(about 7 minutes on 2 cores; cached for later runs)", file=sys.stderr, flush=True)
    built = subprocess.run(["bash", str(BUILD_SCRIPT), _pip()], stdout=subprocess.PIPE, text=True,
                           env=_script_env(version), check=False)  # stderr: the build's progress, on screen
    if built.returncode != 0 or not built.stdout.strip():
        raise NoServerBinary(f"building llama-server failed (status {built.returncode}; its log is above); set "
                             f"{ENV} to a llama-server binary to go on without it")
    return Path(built.stdout.strip().splitlines()[-1])


def binary_identity(binary: Path) -> str:
    """What identifies a binary: its path, size and modification time (a rebuild changes them)."""
    stat = binary.stat()
    return f"{binary}:{stat.st_size}:{stat.st_mtime_ns}"
