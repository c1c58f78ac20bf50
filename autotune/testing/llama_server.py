"""The llama-server binary tests and benchmarks start: one named by the user, or the one the set-up built.

``make test`` builds llama-server from the llama.cpp vendored in the installed llama-cpp-python, for this CPU
(``scripts/build-llama-server.sh``, cached per version, CPU flags and compiler); this finds that build without
building it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUILD_SCRIPT = Path(__file__).parents[2] / "scripts" / "build-llama-server.sh"
ENV = "AUTOTUNE_LLAMA_SERVER"


def llama_server_binary() -> Path:
    """``$AUTOTUNE_LLAMA_SERVER``, else the cached build for this llama-cpp-python and CPU.

    Raises ``LookupError`` saying why when there is none (not built yet, no checkout, no llama-cpp-python).
    """
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    if not BUILD_SCRIPT.exists():
        raise LookupError(f"{BUILD_SCRIPT} is not here to find the llama-server build; set {ENV}")
    try:
        import llama_cpp
    except ImportError:
        raise LookupError("llama-cpp-python is not installed, so no llama-server was built for it") from None
    # --cached prints the path only when built, so the cache key (version, CPU flags, compiler) is computed in one place.
    found = subprocess.run(["bash", str(BUILD_SCRIPT), "--cached", str(Path(sys.executable).parent / "pip")],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "LLAMA_CPP_PYTHON_VERSION": llama_cpp.__version__})
    if found.returncode != 0:
        lines = found.stderr.strip().splitlines()
        raise LookupError(lines[-1] if lines else "no llama-server built here (make test builds it)")
    return Path(found.stdout.strip())
