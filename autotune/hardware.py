"""What the probe knows about a machine, as pydantic models with stable JSON keys.

Other tools rely on these keys: ``cpu.features``, ``cpu.physical_cores``, ``cpu.logical_cores``,
``cpu.usable_cores``, ``cpu.caches``, ``memory.total_bytes``, ``memory.available_bytes``,
``memory.limit_bytes``, ``memory.bandwidth_bytes_per_s``, ``accelerators`` (each with ``kind``,
``name``, ``memory_bytes``) and ``fingerprint``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator


class CacheLevel(BaseModel):
    """One CPU cache as sysfs describes it (per instance, not summed over cores)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    level: int
    type: str = Field(description="Data, Instruction or Unified")
    size_bytes: int
    shared_cpu_list: str | None = Field(default=None, description="CPUs sharing one instance, e.g. '0-15'")


class CpuInfo(BaseModel):
    """The CPU: identity, ISA features and the cores this process may use."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    architecture: str = Field(description="machine name as uname reports it: x86_64, aarch64, arm64")
    vendor: str = ""
    brand: str = ""
    features: list[str] = Field(default_factory=list, description="canonical lower-case ISA feature names, sorted")
    physical_cores: int
    logical_cores: int
    usable_cores: int = Field(description="cores this process may use: affinity and cgroup CPU quota applied")
    caches: list[CacheLevel] = Field(default_factory=list)
    numa_nodes: int = 1
    frequency_mhz: float | None = None


class MemoryInfo(BaseModel):
    """System memory; ``limit_bytes`` is what a process may really use (cgroup limit applied)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    total_bytes: int
    available_bytes: int
    swap_bytes: int = 0
    cgroup_limit_bytes: int | None = Field(default=None, description="None when the cgroup sets no limit")
    limit_bytes: int = Field(description="the smallest of total memory and the cgroup limit")
    bandwidth_bytes_per_s: float | None = Field(default=None, description="measured copy bandwidth, all usable threads")
    bandwidth_1thread_bytes_per_s: float | None = None


class MemoryBandwidth(BaseModel):
    """A measured memory copy bandwidth (a hardware fact contributed separately from MemoryInfo)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    all_threads_bytes_per_s: float
    one_thread_bytes_per_s: float
    threads: int


class Accelerator(BaseModel):
    """A device a backend can offload to: an NVIDIA GPU, Apple's Metal GPU, an OpenVINO NPU, ..."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field(description="cuda, metal, openvino, onnxruntime-ep, ...")
    name: str
    memory_bytes: int | None = None
    details: dict[str, str] = Field(default_factory=dict, description="driver, compute capability, provider, ...")


HardwareFact = CpuInfo | MemoryInfo | MemoryBandwidth | Accelerator
"""What a ``autotune_hardware_facts`` hook implementation may yield."""


class Hardware(BaseModel):
    """Everything the probe found, with a fingerprint of the machine's identity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cpu: CpuInfo
    memory: MemoryInfo
    accelerators: list[Accelerator] = Field(default_factory=list)
    os: str = ""
    probe_warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived_fingerprint(cls, data: Any) -> Any:
        # A dumped Hardware carries its computed fingerprint; it is derived again, never trusted from input.
        if isinstance(data, dict) and "fingerprint" in data:
            data = {k: v for k, v in data.items() if k != "fingerprint"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """Stable id of the machine: identity facts only (never free memory or measured bandwidth)."""
        identity = {
            "arch": self.cpu.architecture,
            "vendor": self.cpu.vendor,
            "brand": self.cpu.brand,
            "features": sorted(self.cpu.features),
            "cores": [self.cpu.physical_cores, self.cpu.logical_cores, self.cpu.usable_cores],
            "caches": sorted((c.level, c.type, c.size_bytes) for c in self.cpu.caches),
            # Rounded so a kernel reserving a few MiB more after an update keeps the identity.
            "memory_gib": round(self.memory.limit_bytes / 2**30),
            "accelerators": sorted((a.kind, a.name, a.memory_bytes or 0) for a in self.accelerators),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def worker_memory_ceiling(self) -> int:
        """What one helper worker (a conversion, a quality score) may hold: 90% of the memory this process may use.

        A step that needs more is killed by the worker's memory guard with its peak, instead of the kernel's
        OOM killer taking the tuner (or the machine) down.
        """
        return int(min(self.memory.limit_bytes, self.memory.available_bytes) * 0.9)

    def has_gpu(self) -> bool:
        """True when an accelerator a runtime can offload layers to is present."""
        return any(a.kind in {"cuda", "metal", "rocm", "vulkan"} for a in self.accelerators)

    def summary(self) -> dict[str, object]:
        """The short form stored in profiles."""
        return {
            "fingerprint": self.fingerprint,
            "cpu": f"{self.cpu.brand or self.cpu.vendor} ({self.cpu.architecture})",
            "usable_cores": self.cpu.usable_cores,
            "features": [f for f in self.cpu.features if f in NOTABLE_FEATURES],
            "memory_limit_bytes": self.memory.limit_bytes,
            "bandwidth_bytes_per_s": self.memory.bandwidth_bytes_per_s,
            "accelerators": [f"{a.kind}: {a.name}" for a in self.accelerators],
        }


NOTABLE_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "dotprod", "i8mm", "sve", "sve2",
)
"""The ISA features that matter for inference kernels; the probe always checks for these."""
