"""autotune: measured answers to "which runtime, quantization and settings for this model on this device?".

The public API is re-exported here (plus ``autotune.errors``, ``autotune.hookspecs`` and ``autotune.testing``);
everything else is an implementation detail. Three entry points: ``tune(model, budget)`` (``tuner``),
``answer`` (from the measurement store, nothing measured) and ``load(profile)`` (``deploy``).

The top holds the entry points and the value types every room shares: ``budget``/``numbers`` (parsing),
``workload``, ``options`` (``TuneOptions``), ``hardware``, ``measurement``, ``record`` (``TrialRecord``: one
trial, typed), ``context`` (``RunContext``: one run's values, the budget decided once), ``reporting``,
``phases``, ``errors``, ``hookspecs``, ``files``, ``distribution``. The rooms::

    plugins/  the plugin machinery: manager, hookspecs' types, the Backend contract (a tutorial), the
              measurement protocol, conversions, exporters, physics, checks at the plugin boundary
    model/    the user's model: format, content hash, HF folders, the bundled default
    probe/    this machine: CPU, caches, memory and cgroup limits, bandwidth, accelerators
    measure/  measuring: worker processes, the artifact cache, one measurement, self-tests, busy machines,
              quality loss
    decide/   deciding: judgment (every "within budget?"), selection (front, objective), statistics
    search/   the search: which backends (sources), the Optuna study (study, space, trials, queue), one
              trial (pipeline), confirmation, assembling the profile
    store/    the measurement store, storage URLs, the study as its view, shared search, warm start, memo
    profile/  the profile: schema, params checks, reading files safely, the JSON exporter
    report/   the HTML page of a profile;  serve/  serving under load;  cli/  the command line (thin)

One trial through the rooms: ``search.queue``/``search.space`` ask Optuna for a configuration →
``search.pipeline`` has the backend ``predict`` it → ``decide.judgment`` skips it if provably over budget →
``measure.artifacts`` builds its artifact once → ``measure.trial`` measures it in a ``measure.worker`` process
(the backend's ``DecodeSession`` driven by ``plugins.protocol``) → ``measure.quality_eval`` scores its quality →
``decide.judgment`` judges it against the budget → a ``record.TrialRecord`` is told to the study
(``search.trials``) and kept in the store (``store.shared``) → after the search ``decide.selection`` and
``search.confirm`` choose, and ``search.assemble`` writes the ``profile``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.budget import Budget, parse_duration, parse_size
from autotune.distribution import installed_version
from autotune.errors import AutotuneError
from autotune.files import UnreadableFile, read_bounded, read_json
from autotune.hardware import Accelerator, CacheLevel, CpuInfo, Hardware, HardwareFact, MemoryBandwidth, MemoryInfo
from autotune.hookspecs import hookimpl, hookspec
from autotune.measure.quality import load_eval_text, log_softmax_rows
from autotune.measurement import Measurement, RunTimings, ServedFigures, percentile, relative_spread, summarize
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
    ServedRound,
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
from autotune.store.snapshots import KeptFill, kept_fill
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
    "RunTimings", "SPREAD_LIMIT", "SearchSpace", "ServedRound", "Workload", "decode_latency_lower_bound_ms", "hookimpl",
    "hookspec", "kv_cache_bytes", "load_profile", "logprob_chunks", "measure_session", "parse_duration",
    "parse_size", "prompt_text_tokens", "summarize", "precision_label", "__version__",
    "bundled_model", "HardwareFact", "IntChoice", "MAX_THREADS", "PROMPT_TEXT", "cached_content_hash", "detect_format",
    "load_eval_text", "log_softmax_rows", "validate_params", "ServedFigures", "percentile", "relative_spread",
    "CONVERSION_RECORD", "inspect_hf_folder", "model_shape", "safetensors_header",
    "Objective", "Reporter", "SilentReporter", "TuneOptions", "TuneResult", "Tuner", "load", "tune",
    "decode_claim", "evidence", "evidence_comment", "usable_cores_here", "KeptFill", "kept_fill", "UnreadableFile", "read_bounded", "read_json",
]
