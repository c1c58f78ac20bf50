"""autotune: measured answers to "which runtime, quantization and settings for this model on this device?".

The public API is re-exported here; modules are private implementation details.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from .backend import (Artifact, Availability, Backend, Categorical, IntRange, Params, Prediction, SearchSpace,
                      precision_label)
from .budget import Budget, parse_duration, parse_size
from .conversion import Conversion
from .errors import AutotuneError
from .exporter import Exporter
from .hardware import Accelerator, CacheLevel, CpuInfo, Hardware, MemoryBandwidth, MemoryInfo
from .hookspecs import hookimpl, hookspec
from .measurement import Measurement, RunTimings, summarize
from .model_source import ModelSource
from .profile import DeploymentProfile, load_profile
from .workload import Workload

try:
    __version__ = _version("autotune")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "Accelerator", "Artifact", "AutotuneError", "Availability", "Backend", "Budget", "CacheLevel",
    "Categorical", "Conversion", "CpuInfo", "DeploymentProfile", "Exporter", "Hardware", "IntRange",
    "Measurement", "MemoryBandwidth", "MemoryInfo", "ModelSource", "Params", "Prediction", "RunTimings",
    "SearchSpace", "Workload", "hookimpl", "hookspec", "load_profile", "parse_duration", "parse_size",
    "summarize", "precision_label", "__version__",
]
