"""autotune: measured answers to "which runtime, quantization and settings for this model on this device?".

The public API is re-exported here (plus ``autotune.errors``, ``autotune.hookspecs`` and ``autotune.testing``);
other modules are implementation details. ``autotune.tune(model, budget)`` is the library entry point.

Layout, in the order a run meets it (one concept per module):

* the machine: ``probe`` (facts from ``probes/*`` plugins, volatile limits read fresh) → ``hardware``;
  ``selftest`` (does each runtime really run here, in a worker);
* the question: ``budget``/``numbers`` (parsing), ``workload``, ``options`` (``TuneOptions``);
* the plugins: ``hookspecs`` (the tutorial), ``plugins`` (failure-isolated manager), ``backend`` (the contract),
  ``protocol`` (the measurement protocol, written once), ``physics`` (KV cache, bandwidth bound);
* the run: ``tuner`` (the loop, ``tune()``) → ``sources`` (which backends, from which model) → ``study``
  (Optuna study and trial records) over ``storage`` (database URLs, errors) → ``store`` (every measurement under
  the key that determines it; claims for fleets) and ``store_view`` (the study seeded from the store, claims
  around each measurement, the warm start) → ``pipeline`` (one trial) → ``trial``/``worker`` (artifacts, isolated
  measurement) → ``quality``/``quality_eval`` → ``judgment`` (every budget decision) → ``selection`` and
  ``confirm`` (choosing) → ``assemble`` (the profile) → ``profile``/``exporter`` (the output);
* answers from the store without measuring: ``answer`` (``autotune answer``/``autotune store``);
* the CLI: ``cli`` (thin), ``run``/``run_options``/``console``/``plot``, ``store_commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.budget import Budget, parse_duration, parse_size
from autotune.distribution import installed_version
from autotune.errors import AutotuneError
from autotune.hardware import Accelerator, CacheLevel, CpuInfo, Hardware, HardwareFact, MemoryBandwidth, MemoryInfo
from autotune.hookspecs import hookimpl, hookspec
from autotune.measure.quality import log_softmax_rows
from autotune.measurement import Measurement, RunTimings, summarize
from autotune.model.bundled import model_path as bundled_model
from autotune.model.hf_folder import CONVERSION_RECORD, inspect_hf_folder, model_shape, safetensors_header
from autotune.model.source import ModelSource, cached_content_hash, detect_format
from autotune.options import Objective, TuneOptions
from autotune.plugins.backend import (
    Artifact,
    Availability,
    Backend,
    Categorical,
    IntRange,
    Params,
    Prediction,
    SearchSpace,
    precision_label,
)
from autotune.plugins.conversion import Conversion
from autotune.plugins.exporter import Exporter, decode_claim, evidence, evidence_comment
from autotune.plugins.physics import decode_latency_lower_bound_ms, kv_cache_bytes
from autotune.plugins.protocol import SPREAD_LIMIT, DecodeSession, logprob_chunks, measure_session, prompt_text_tokens
from autotune.probe.cpu import usable_cores_here
from autotune.profile.params import MAX_THREADS, IntChoice, validate_params
from autotune.profile.reading import load_profile
from autotune.profile.schema import DeploymentProfile
from autotune.reporting import Reporter, SilentReporter
from autotune.workload import PROMPT_TEXT, Workload

if TYPE_CHECKING:  # type checkers see the lazily loaded names below
    from autotune.deploy import load
    from autotune.search.assemble import TuneResult
    from autotune.tuner import Tuner, tune

_LAZY = {"tune": "tuner", "Tuner": "tuner", "TuneResult": "search.assemble", "load": "deploy"}
"""Loaded on first use: the tuning loop imports Optuna, which a plugin's worker process never needs."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = installed_version()

__all__ = [
    "Accelerator", "Artifact", "AutotuneError", "Availability", "Backend", "Budget", "CacheLevel",
    "Categorical", "Conversion", "CpuInfo", "DecodeSession", "DeploymentProfile", "Exporter", "Hardware",
    "IntRange", "Measurement", "MemoryBandwidth", "MemoryInfo", "ModelSource", "Params", "Prediction",
    "RunTimings", "SPREAD_LIMIT", "SearchSpace", "Workload", "decode_latency_lower_bound_ms", "hookimpl",
    "hookspec", "kv_cache_bytes", "load_profile", "logprob_chunks", "measure_session", "parse_duration",
    "parse_size", "prompt_text_tokens", "summarize", "precision_label", "__version__",
    "bundled_model", "HardwareFact", "IntChoice", "MAX_THREADS", "PROMPT_TEXT", "cached_content_hash", "detect_format",
    "log_softmax_rows", "validate_params",
    "CONVERSION_RECORD", "inspect_hf_folder", "model_shape", "safetensors_header",
    "Objective", "Reporter", "SilentReporter", "TuneOptions", "TuneResult", "Tuner", "load", "tune",
    "decode_claim", "evidence", "evidence_comment", "usable_cores_here",
]
