"""Finding MLX and mlx-lm lazily, and what they say about the device they run on.

Nothing here imports MLX at module import time: the plugin must load (and say what to install)
on machines without it. MLX picks its device itself: the Metal GPU on Apple silicon, the CPU
elsewhere (the ``mlx[cpu]`` build for Linux, which is much slower).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

from autotune.errors import BackendUnavailable

INSTALL_HINT = (
    "pip install mlx mlx-lm (Apple silicon, Metal GPU) or pip install 'mlx[cpu]' mlx-lm (Linux, CPU only)"
)


def import_mlx() -> ModuleType:
    """``mlx.core``, or ``BackendUnavailable`` saying what to install."""
    try:
        # The parent package first: a test hiding it (sys.modules["mlx"] = None) must win over an
        # already-imported ``mlx.core``.
        importlib.import_module("mlx")
        return importlib.import_module("mlx.core")
    except (ImportError, OSError) as error:
        raise BackendUnavailable(f"MLX is not usable here ({error}); {INSTALL_HINT}") from None


def import_mlx_lm() -> ModuleType:
    """``mlx_lm`` (it imports transformers: seconds), or ``BackendUnavailable`` saying what to install."""
    import_mlx()
    try:
        return importlib.import_module("mlx_lm")
    except (ImportError, OSError) as error:
        raise BackendUnavailable(f"mlx-lm is not usable here ({error}); {INSTALL_HINT}") from None


def has_mlx_lm() -> bool:
    """True when mlx-lm is installed (found without importing it, which takes seconds)."""
    try:
        return importlib.util.find_spec("mlx_lm") is not None
    except (ImportError, ValueError):  # ValueError: hidden in sys.modules
        return False


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class RuntimeInfo:
    """The MLX runtime found here: versions and the device it computes on."""

    mlx_version: str
    mlx_lm_version: str
    device: str
    """``gpu`` (Metal) or ``cpu``: MLX's default device."""
    device_info: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """One version string for both packages (conversions depend on mlx-lm, kernels on mlx)."""
        return f"{self.mlx_version}+mlx-lm.{self.mlx_lm_version}"

    @property
    def on_gpu(self) -> bool:
        """True when MLX computes on the Metal GPU."""
        return self.device == "gpu"


def device_info(mx: ModuleType, device: object | None = None) -> dict[str, str]:
    """``mx.device_info`` (``mx.metal.device_info`` on older MLX), values as strings; {} when unknown."""
    reader = getattr(mx, "device_info", None)
    try:
        info = reader(device) if reader is not None else mx.metal.device_info()
    except Exception:  # noqa: BLE001 - a device query must never make the backend unusable
        return {}
    return {str(key): str(value) for key, value in dict(info).items()}


@functools.cache
def runtime_info() -> RuntimeInfo:
    """Versions and device of the installed MLX (cached: it cannot change inside a process)."""
    mx = import_mlx()
    device = mx.default_device()
    kind = "gpu" if device.type == mx.DeviceType.gpu else "cpu"
    return RuntimeInfo(
        mlx_version=_version("mlx") or str(getattr(mx, "__version__", "unknown")),
        mlx_lm_version=_version("mlx-lm") or "unknown",
        device=kind,
        device_info=device_info(mx, device),
    )


@functools.cache
def matvec_flops_per_s() -> float:
    """Measured float32 matrix-vector throughput on MLX's default device (about 20 ms, once per process).

    One decode step is a chain of matrix-vector products, so this bounds how fast decoding can be.
    On the Linux CPU build (a single-threaded reference BLAS) it measured 4.6 GFLOP/s.
    """
    import time

    mx = import_mlx()
    vector, matrix = mx.random.normal((1, 1024)), mx.random.normal((1024, 4096))
    mx.eval(vector, matrix)
    for _ in range(2):
        mx.eval(vector @ matrix)
    repetitions = 10
    started = time.perf_counter()
    for _ in range(repetitions):
        mx.eval(vector @ matrix)
    return 2 * 1024 * 4096 * repetitions / (time.perf_counter() - started)
