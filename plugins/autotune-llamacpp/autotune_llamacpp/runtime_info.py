"""Whether llama-cpp-python is usable here, and what its llama.cpp was built with."""

from __future__ import annotations

from autotune import Availability

INSTALL_HINT = "llama-cpp-python is not installed: pip install llama-cpp-python"


def parse_system_info(text: str) -> dict[str, list[str]]:
    """``llama_print_system_info()`` → backend name → enabled features.

    The text looks like ``CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | REPACK = 1 |`` (one such
    group per compiled backend); features set to 0 are dropped.
    """
    backends: dict[str, list[str]] = {}
    current: str | None = None
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        if " : " in part:  # "CPU : SSE3 = 1" starts a backend's group
            current, part = (piece.strip() for piece in part.split(" : ", 1))
            backends.setdefault(current, [])
        if current is None or "=" not in part:
            continue
        name, value = (piece.strip() for piece in part.split("=", 1))
        if value not in ("0", ""):
            backends[current].append(name.lower())
    return backends


def availability() -> Availability:
    """Importable? Then its version, the CPU features llama.cpp was compiled for, and GPU offload support."""
    try:
        import llama_cpp
    except ImportError:
        return Availability(available=False, reason=INSTALL_HINT)
    except OSError as error:  # the shared library failed to load (wrong architecture, missing libc symbols)
        return Availability(available=False, reason=f"llama-cpp-python is installed but libllama failed to load: {error}")
    raw = llama_cpp.llama_print_system_info()
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    backends = parse_system_info(text)
    details = {f"{name.lower()}_features": " ".join(features) for name, features in backends.items()}
    details["gpu_offload"] = str(bool(llama_cpp.llama_supports_gpu_offload())).lower()
    details["mmap"] = str(bool(llama_cpp.llama_supports_mmap())).lower()
    return Availability(available=True, version=getattr(llama_cpp, "__version__", None), details=details)
