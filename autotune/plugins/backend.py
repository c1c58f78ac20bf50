"""The contract between the tuner and an inference runtime: a tutorial, member by member.

A backend plugin returns ``Backend`` objects from its ``autotune_backends`` hook (see
``autotune.hookspecs``). A subclass sets two class attributes and implements five methods; every
other member has a default that is right for a simple runtime. The tuner calls them in this order.

**What it is.** ``name`` (unique, lower-case: ``llamacpp``) and ``source_formats`` (the model
formats ``inspect`` reads: ``{"gguf"}``). ``artifact_params`` names the parameters that change the
built artifact (a quantization type); the rest are runtime settings, so two configurations that
differ only in those share one artifact. ``output_params`` names the runtime settings that change the outputs
(a KV-cache type), so quality is scored per configuration as it will run. ``params_model`` (a pydantic model) types and bounds the
parameters, so ``autotune validate`` and every exporter check a profile the same way.
``measures_this_machine`` is False only for backends answering from recorded figures (a replay).
``serves`` is True for a backend that measures a served workload (several clients, the user's prompts) by
starting a server and loading it over HTTP; the others measure one stream in-process, so a run with
``--clients``/``--prompts`` leaves them out, and a default single-stream run leaves out the serving ones.
A serving backend may also offer ``resident(artifact, params, workload)``: its server started once and kept
running while the confirmation rounds load it with the same requests as the other finalists'.

**Can it run here?** ``availability()`` imports the runtime and says why not when it cannot (the
module itself must import without the runtime). ``version()`` and ``runtime_identity()`` name the
installed build: stored figures and cached self-tests are kept under them, so an upgrade is
measured again (the tuner reads them through ``runtime_version``/``runtime_build``, so a raising
check costs only the plugin's figures). ``self_test(workdir)`` runs the runtime for real on a tiny
model inside a worker: a build that dies by SIGILL on this CPU is shown unavailable, with
``crash_advice(signal)`` telling the user what to do. ``not_worth_tuning(hardware)`` leaves it out of
a default run where it cannot compete (naming it with ``--backend`` tunes it anyway).

**Can it run this model?** ``supports(source)`` refuses, in milliseconds and before any conversion,
a model its metadata says it cannot run. ``inspect(path)`` reads a model in one of
``source_formats`` into a ``ModelSource`` (hash, architecture, parameter count, metadata); a model
in another format reaches it through the conversion plugins.

**What to try.** ``search_space(source, hardware, workload)`` declares each parameter as a
``Categorical`` or ``IntRange``. ``starting_points`` are measured first, so a short run already
answers well; ``canonical_params`` spells a configuration one way (two spellings are measured once);
``untuned_params`` is what a user gets with no tuning and ``rule_of_thumb`` what a knowledgeable user
runs: the confirmation stage measures both beside the winner. ``for_cores(params, cores)`` caps a
configuration's threads for a machine where other work takes some cores (``--under-load``).
``describe(params)`` is the configuration's compact label in tables.

**Before building.** ``predict(source, params, workload, hardware)`` estimates peak memory (and a
latency lower bound) without building or running: a configuration provably over budget is skipped.

**Building.** ``prepare(source, params, workdir)`` builds the artifact (quantize, convert) into
``workdir``; the tuner caches it by backend, runtime version, source content and
``artifact_params``, so each is built once (``autotune.testing.prepare_artifact`` is that cache).

**Measuring.** ``measure(artifact, params, workload)`` runs inside a fresh worker process (with a
timeout and a memory guard; ``autotune.testing.measure`` runs it so). A backend does not time
anything itself: it wraps one loaded model in a ``DecodeSession`` (its runtime's calls only:
``prompt_tokens``, ``reset``, ``prefill``, ``first_token``, ``step``, ``close``) and hands a loader of
it to ``measure_session``, which runs the one protocol every backend shares (load, warm-up, timed
runs on an empty cache, the spread check, a deep-context run; ``autotune.plugins.protocol``)::

    def measure(self, artifact, params, workload):
        return measure_session(lambda: MySession(artifact.path, params, workload.context), workload)

All four built-in plugins do exactly this. Leave ``peak_rss_bytes`` unset: the worker fills it.

**Scoring quality.** ``tokenize(source, text)`` and ``logprobs(artifact, params, token_ids,
chunk_tokens)`` (next-token log-probabilities, one chunk at a time, cut by ``logprob_chunks``) let
the tuner measure quality loss against the reference precision; a backend without them is scored
by bits per weight, or against another backend that reads the source.

**Deploying.** ``load_profile(profile)`` returns the runtime object a profile describes
(``autotune.load``); exporters (``autotune_exporters``) turn a profile into commands and files.

Parameters are plain ``dict[str, value]`` named as in the search space; the tuner stores them in
the study and the profile exactly as given.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel

from autotune.hardware import Hardware
from autotune.measurement import Measurement
from autotune.model.source import ModelSource
from autotune.workload import Workload

if TYPE_CHECKING:
    from autotune.serve.traffic import Request

Params = dict[str, Any]


class ServedRound(Protocol):
    """One load of a resident server with the requests given: what ``Backend.resident`` yields."""

    def __call__(self, requests: Sequence[Request], stop_over_itl_ms: float | None = None) -> Measurement:
        """Load the server once with ``requests``; with ``stop_over_itl_ms``, stop the load as soon as its p95
        inter-token latency is certain to end over that bound (``LoadPlan.stop_over_itl_ms``) and say so in the
        Measurement's ``context["stopped"]``."""
        ...


@dataclass(frozen=True)
class Categorical:
    """A parameter taking one of ``choices`` (str, int, float, bool or None)."""

    choices: tuple[Any, ...]


@dataclass(frozen=True)
class IntRange:
    """An integer parameter in ``[low, high]``."""

    low: int
    high: int
    step: int = 1
    log: bool = False


Dimension = Categorical | IntRange
SearchSpace = dict[str, Dimension]


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; ``reason`` says why not (and how to fix it)."""

    available: bool
    reason: str = ""
    version: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """A model file or folder ready for one backend, with what was really written.

    ``precision`` names the requested type (``Q4_K_M``, ``int4``); ``bits_per_weight`` is the
    effective figure computed from what was written (llama.cpp falls back to other tensor types
    when dimensions don't divide), and ``details`` records e.g. the tensor type counts.
    """

    path: Path
    format: str
    precision: str
    bits_per_weight: float
    size_bytes: int
    details: dict[str, Any] = field(default_factory=dict)
    """Backend-specific facts; ``details["fallback"]`` says in words what was written instead of ``precision``
    (``details["source_mix"]``: the other types in a source file deployed as it is)."""

    @property
    def label(self) -> str:
        """The precision as written: the requested type, and its fallback wherever one happened."""
        return precision_label(self.precision, self.details)


def precision_label(precision: str, details: Mapping[str, Any]) -> str:
    """``Q2_K``, or ``Q2_K (24/30 tensors fell back to Q4_0/Q5_0)`` when tensors were written in other types.

    The source deployed as it is was not written by autotune: its own mix of types (``details["source_mix"]``)
    reads ``Q4_K_M (the source file as is: 90/236 tensors in Q5_0/Q8_0)``, never as a fallback.
    """
    fallback = details.get("fallback")
    if fallback:
        return f"{precision} ({fallback})"
    mix = details.get("source_mix")
    return f"{precision} (the source file as is: {mix})" if mix else precision


@dataclass(frozen=True)
class Prediction:
    """What a configuration will cost, estimated before it is built or run."""

    memory_bytes: int
    latency_lower_bound_ms: float | None = None
    breakdown: dict[str, int] = field(default_factory=dict)


class Backend(ABC):
    """An inference runtime the tuner can search over. Subclass it in a plugin.

    Subclasses set ``name`` (unique, lower-case) and ``source_formats`` (formats ``inspect``
    accepts). A backend module must import without its runtime installed; ``availability``
    then says what is missing.
    """

    name: ClassVar[str]
    source_formats: ClassVar[frozenset[str]]
    artifact_params: ClassVar[tuple[str, ...]] = ()
    """Parameters that change the artifact (e.g. the quantization type); the rest are runtime settings."""
    output_params: ClassVar[tuple[str, ...]] = ()
    """Runtime settings that change the model's outputs (a quantized KV cache), besides ``artifact_params``, which
    always do. Quality is scored once per distinct value of both (``autotune.measure.artifacts.output_key``):
    configurations differing only in other settings (threads, batch sizes, mmap) share one score."""
    params_model: ClassVar[type[BaseModel] | None] = None
    """A pydantic model of this backend's parameters (types and bounds). Profiles are validated with it and
    exporters render from it, so a profile that validates always exports. None: parameters are unchecked."""
    measures_this_machine: ClassVar[bool] = True
    """False only for backends that answer from recorded figures (replay tables, test fakes) instead of running
    here: those may tune under another machine's hardware description; real runtimes may not."""
    serves: ClassVar[bool] = False
    """True for a backend whose ``measure`` serves the workload (``workload.concurrency`` clients, its prompts) through
    a server; False: it measures one stream in-process, and is left out of a served workload's run."""

    @abstractmethod
    def availability(self) -> Availability:
        """Say whether the runtime is importable and usable here."""

    def version(self) -> str | None:
        """The runtime's version, when available."""
        return self.availability().version

    def self_test(self, workdir: Path) -> str | None:
        """Run the runtime for real on a tiny model it makes or ships, in seconds; return what ran.

        Called inside a fresh worker process (``autotune.measure.selftest``), so a runtime that dies by a
        signal on this CPU (SIGILL from a build for other CPU features, SIGSEGV) is caught there and
        the backend is shown unavailable instead of being tuned. ``workdir`` is an empty scratch
        folder. Return a short description (``"decoded 8 tokens of a tiny llama GGUF"``); raise when
        the runtime misbehaves. Default: no self-test (None), so availability is import-only.
        """
        return None

    def not_worth_tuning(self, hardware: Hardware) -> str | None:
        """Why tuning this backend here by default would be wasted (it runs, but cannot compete), or None.

        Only consulted when the user did not name backends: ``--backend NAME`` tunes it anyway.
        Default: None.
        """
        return None

    def supports(self, source: ModelSource) -> str | None:
        """Why this backend cannot run the model ``source`` describes, or None when it may.

        ``source`` is the user's model as its native reader saw it (architecture, metadata such as
        ``sliding_window``), before any conversion: a backend that can tell from metadata that it will
        refuse the model saves the minutes a conversion would cost. Decide in milliseconds; say what
        would be needed instead. Default: None (try it).
        """
        return None

    def runtime_identity(self) -> str:
        """What identifies the installed runtime build; self-test results are cached under it.

        Default: the version. Override to add what a rebuild of the same version changes (the
        shared library's size and modification time), so a rebuilt runtime is tested again.
        """
        return str(self.version())

    def crash_advice(self, signal_name: str) -> str:
        """What a user should do when this runtime's process dies by ``signal_name`` on this machine."""
        return "reinstall the runtime built for this machine, then run `autotune plugins --refresh`"

    @abstractmethod
    def inspect(self, path: Path) -> ModelSource:
        """Read a model in one of ``source_formats``: hash, architecture, parameter count, metadata."""

    @abstractmethod
    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        """The parameters worth tuning for this model on this machine."""

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        """Sensible configurations measured first, so a short run already gives a good answer."""
        return []

    def canonical_params(self, params: Params) -> Params:
        """The same configuration in one canonical spelling (e.g. a group size dropped where it has no effect).

        The tuner compares configurations through this, so two spellings of one configuration are
        measured once. Default: the parameters as given.
        """
        return dict(params)

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """What a user gets from this runtime with no tuning (the baseline a tuned profile must beat)."""
        return self.starting_points(source, hardware, workload)[0]

    def rule_of_thumb(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params | None:
        """What a knowledgeable user runs without tuning: every physical core, the runtime's defaults.

        The confirmation stage measures it beside the finalists, so the profile can say whether tuning beat
        the rule of thumb beyond the noise, or tied with it. Default: None (no such baseline).
        """
        return None

    def for_cores(self, params: Params, cores: int) -> Params:
        """``params`` run on at most ``cores`` cores (its thread counts capped), for a machine where other work
        takes the rest.

        With ``--under-load`` the search also measures each starting point on the cores the competing load leaves
        free, and the confirmation compares the best of those beside the winner: a configuration that uses every
        core can collapse when one of them is busy (thread barriers waiting on a descheduled peer). Default: the
        parameters unchanged (a runtime without a thread setting).
        """
        return dict(params)

    @abstractmethod
    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        """Estimate peak memory (and optionally a latency lower bound) without building or running."""

    @abstractmethod
    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        """Build the artifact for ``params`` (only ``artifact_params`` matter) inside ``workdir``.

        ``workdir`` is empty and private to this build; the tuner moves it into the cache when
        this returns, so paths inside the returned Artifact must be inside ``workdir`` and are
        rewritten by the tuner. Raise ``AutotuneError`` with a reason when the type is impossible.
        """

    @abstractmethod
    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        """Load the artifact with ``params`` and time the workload. Runs inside a fresh worker process.

        Implement it with ``measure_session(load, workload)``: ``load`` returns a ``DecodeSession`` over
        the loaded model (``autotune.plugins.protocol``), and the protocol does the timing, so every backend
        is measured alike. Leave ``peak_rss_bytes`` unset: the worker fills it from the operating system.
        """

    def resident(self, artifact: Artifact, params: Params, workload: Workload) -> AbstractContextManager[ServedRound] | None:
        """The deployment started once and kept running while the confirmation rounds load it; None (the default):
        every round is a fresh worker's ``measure``.

        For a backend that ``serves``. The context manager starts the server (and warms it up as ``measure`` does)
        and yields a ``ServedRound``: called with one round's requests (the same for every finalist of the round,
        so rounds compare like with like; never sent to this server before, so its prompt cache cannot help), it
        loads the server once with ``workload.concurrency`` clients and returns that load's ``Measurement`` (stopped
        early once over ``stop_over_itl_ms`` where the rounds give one: measurements under a competing load). The
        server is stopped when the block ends, however it ends. It runs in the tuner's process: the runtime is the
        server process, so its crash fails the round, not the tuner.
        """
        return None

    def load_profile(self, profile: Any) -> Any:
        """The runtime object ``profile`` (a ``DeploymentProfile`` of this backend) describes, ready to generate.

        ``autotune.load`` calls it after checking the profile still matches this deployment.
        """
        raise NotImplementedError(f"backend {self.name!r} cannot load profiles yet; use its exports instead")

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
        """Yield next-token log-probabilities for ``token_ids``, one chunk at a time.

        Each chunk covers ``chunk_tokens`` consecutive tokens evaluated from a fresh context, with the
        configuration's settings (a quantized KV cache changes the outputs), and is an array of shape
        ``(chunk_len - 1, vocab)``: row ``i`` is the distribution of token ``i + 1`` of the chunk given tokens
        ``0..i``. A chunk may be yielded as several consecutive blocks of its rows (none spanning two chunks), so
        a large vocabulary never needs a whole chunk in memory. A backend may also take a keyword
        ``first_row``: then it yields only rows ``first_row..`` of each chunk (the rows before are context the
        tuner does not score, and need no logits); without it the tuner drops them itself.
        """
        raise NotImplementedError(f"backend {self.name!r} does not expose log-probabilities")

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        """Token ids of ``text`` with the source model's tokenizer (used for quality evaluation)."""
        raise NotImplementedError(f"backend {self.name!r} cannot tokenize")

    def describe(self, params: Mapping[str, Any]) -> str:
        """A compact human label for a configuration."""
        return " ".join(f"{k}={v}" for k, v in params.items())


def runtime_version(backend: Backend) -> str:
    """``backend.version()`` as text, or a version no stored figure has when the plugin's check raises.

    The tuner calls this, never ``version()`` directly: a plugin whose version check is broken must
    cost its own figures (nothing stored under its name is taken as current), not the run.
    """
    try:
        return str(backend.version() or "unknown")
    except Exception as error:  # noqa: BLE001 - a broken plugin costs its own figures, not the command
        if backend.name not in _VERSION_WARNED:  # said once per backend and command, in answer and store too
            _VERSION_WARNED.add(backend.name)
            logging.getLogger("autotune").warning(
                f"backend {backend.name!r}: its plugin's version() raised {error!r}; figures stored for it are not "
                "taken as current (report it to the plugin)")
        return f"unknown (version check raised {type(error).__name__})"


_VERSION_WARNED: set[str] = set()


def runtime_build(backend: Backend) -> str:
    """``backend.runtime_identity()``, or ``runtime_version`` when it raises (the default identity is the version)."""
    try:
        return str(backend.runtime_identity())
    except Exception:  # noqa: BLE001 - a broken plugin costs its own cached results, not the command
        return runtime_version(backend)


def within_cores(backend: Backend, params: Params, cores: int) -> bool:
    """True when ``params`` already runs on at most ``cores`` cores (``Backend.for_cores`` leaves it as it is);
    False too when the plugin's hook raises (a plugin's bug costs this judgement, never the run)."""
    try:
        capped = backend.canonical_params(backend.for_cores(dict(params), cores))
        return bool(capped == backend.canonical_params(dict(params)))
    except Exception:  # noqa: BLE001
        return False


def has_logprobs(backend: Backend) -> bool:
    """True when the backend overrides ``Backend.logprobs`` (it can score quality or be the reference)."""
    return type(backend).logprobs is not Backend.logprobs
