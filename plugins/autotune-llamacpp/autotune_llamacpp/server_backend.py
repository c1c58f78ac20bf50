"""The ``llamacpp-server`` backend: the same GGUF files, measured through the llama-server that ships them.

A served workload (``--clients N``, ``--prompts FILE``) is measured by starting llama-server with the
configuration (``server_args.server_argv``, the one command line the export renders too) and loading it with
concurrent clients over loopback (``server_measure``). The model side — reading GGUF headers, the quantizations
reachable from the source, building them, tokenizing — is the in-process backend's, inherited, so both backends
offer the same artifacts; quality is scored with the in-process runtime on the same llama.cpp (speculation and
slots do not change the next-token distributions).

Search space (``server_args.ServerParams`` types them; ``None`` leaves a flag to llama-server):

- ``quant``: as the in-process backend (the source's own type first, then lower ones);
- ``n_parallel`` (-np): 1 … clients (powers of two and the client count), or auto (4 slots, unified KV);
- ``n_threads`` (-t) and ``n_threads_batch`` (-tb): 1 … usable cores — on a busy machine fewer generation threads
  than cores keep decoding from stalling at thread barriers with a descheduled peer;
- ``n_batch``/``n_ubatch`` (-b/-ub), ``flash_attn`` (-fa: auto, off, on), ``type_kv`` (-ctk/-ctv): as the in-process
  backend;
- ``spec_type`` (none, ngram-mod, ngram-simple, ngram-map-k) with ``spec_ngram_size`` (8, 12, 24): n-gram
  speculation needs no draft model and pays where answers copy their prompt;
- ``cache_reuse`` (0, 256): reuse of cached prompt chunks by KV shifting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from autotune import (
    Artifact,
    Availability,
    Categorical,
    Hardware,
    IntRange,
    Measurement,
    ModelSource,
    Params,
    Prediction,
    SearchSpace,
    ServedRound,
    Workload,
)
from autotune.errors import BackendUnavailable

from . import memory_model
from .backend import N_BATCH_CHOICES, N_UBATCH_CHOICES, LlamaCppBackend
from .params import KV_TYPES
from .runtime_info import availability as runtime_availability
from .server_args import BACKEND_NAME, SPEC_SIZE_FLAGS, ServerParams, canonical, server_params, slots
from .server_binary import (
    NoServerBinary,
    binary_identity,
    ensure_binary,
    find_binary,
    missing_build_tools,
    named_binary,
)
from .server_measure import measure_server, resident_server
from .tensor_plan import as_is, plan_tensors

SPEC_TYPES_SEARCHED = ("none", "ngram-mod", "ngram-simple", "ngram-map-k")
SPEC_SIZES = (8, 12, 24)
CACHE_REUSE_CHOICES = (0, 256)
DEFAULT_SPEC_SIZE = 12
"""The size a starting point gives when it does not speculate (canonical_params drops it then)."""
LLAMA_SERVER_BATCH = (2048, 512)
"""llama-server's own -b/-ub defaults, for the in-process settings that score quality and predict memory."""


def slot_choices(clients: int) -> tuple[int | None, ...]:
    """``n_parallel`` values: auto (None), then 1, 2, 4, … below ``clients``, then ``clients`` itself."""
    counts = {clients}
    power = 1
    while power < clients:
        counts.add(power)
        power *= 2
    return (None, *sorted(counts))


def in_process_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The in-process backend's parameters for the same model settings (memory model, quality scoring).

    Flash attention left to llama-server (auto) counts as on: this build resolves auto to on for the CPU.
    """
    typed = server_params(params)
    n_batch = typed.n_batch or LLAMA_SERVER_BATCH[0]
    return {"quant": typed.quant, "n_threads": typed.n_threads, "n_batch": n_batch,
            "n_ubatch": min(typed.n_ubatch or LLAMA_SERVER_BATCH[1], n_batch),
            "flash_attn": typed.flash_attn is not False, "type_kv": typed.type_kv or "f16"}


class LlamaCppServerBackend(LlamaCppBackend):
    """llama.cpp's llama-server under concurrent clients: the deployment as it will run."""

    name: ClassVar[str] = BACKEND_NAME
    # As the in-process backend: the KV-cache type and flash attention change the outputs; slots, threads,
    # batches, speculation (which keeps greedy outputs: it only verifies drafts) and cache reuse do not.
    output_params: ClassVar[tuple[str, ...]] = ("type_kv", "flash_attn")
    params_model: ClassVar[type[BaseModel] | None] = ServerParams
    serves: ClassVar[bool] = True

    # -- what the runtime is ------------------------------------------------------------------

    def availability(self) -> Availability:
        """The in-process runtime (its llama.cpp is the one built), then a llama-server found or buildable here."""
        runtime = runtime_availability()
        if not runtime.available:
            return runtime
        try:
            binary = find_binary()
        except NoServerBinary as missing:
            if named_binary() is not None or missing_build_tools():
                return Availability(available=False, reason=str(missing), version=runtime.version)
            return Availability(available=True, version=runtime.version,
                                details={**runtime.details, "llama_server": "built on first use (about 7 minutes)"})
        return Availability(available=True, version=runtime.version, details={**runtime.details,
                                                                              "llama_server": str(binary)})

    def self_test(self, workdir: Path) -> str | None:
        """Serve a few tokens of a tiny model through the llama-server found here (nothing when none is built yet:
        it is built, and then tested, on first use)."""
        try:
            binary = find_binary()
        except NoServerBinary:
            return "llama-server is not built yet; it is built for this CPU on first use"
        from autotune.testing.tiny_gguf import make_tiny_gguf

        model = make_tiny_gguf(workdir / "tiny-f16.gguf", hidden=256, layers=2, vocab=512, context=256)
        workload = Workload(prompt_tokens=16, gen_tokens=4, context=128, runs=1, concurrency=1)
        measurement = measure_server(binary, model, {"n_parallel": 1}, workload, log_dir=workdir)
        tokens = sum(measurement.served.request_tokens) if measurement.served else 0
        return f"served {tokens} tokens of a tiny llama GGUF through {binary}"

    def runtime_identity(self) -> str:
        """The in-process build's identity and the llama-server binary's (a rebuild of either is tested again)."""
        try:
            server = binary_identity(find_binary())
        except NoServerBinary:
            server = "no llama-server yet"
        return f"{super().runtime_identity()} server={server}"

    # -- search space --------------------------------------------------------------------------

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        cores = max(1, hardware.cpu.usable_cores)
        return {
            "quant": Categorical(tuple(self.quant_choices(source))),
            "n_parallel": Categorical(slot_choices(workload.concurrency)),
            "n_threads": IntRange(1, cores),
            "n_threads_batch": IntRange(1, cores),
            "n_batch": Categorical(N_BATCH_CHOICES),
            "n_ubatch": Categorical(N_UBATCH_CHOICES),
            "flash_attn": Categorical((None, False, True)),
            "type_kv": Categorical(KV_TYPES),
            "spec_type": Categorical(SPEC_TYPES_SEARCHED),
            "spec_ngram_size": Categorical(SPEC_SIZES),
            "cache_reuse": Categorical(CACHE_REUSE_CHOICES),
        }

    def canonical_params(self, params: Params) -> Params:
        """No n-gram size without a kind that has one; n_ubatch capped at n_batch."""
        return canonical(params)

    def _point(self, quant: str, n_parallel: int | None, threads: int, **flags: Any) -> Params:
        """A configuration inside the search space: llama-server's defaults spelled out (its batch sizes, f16
        cache, no speculation or reuse; flash attention left to it), with ``flags`` changed."""
        return {"quant": quant, "n_parallel": n_parallel, "n_threads": threads, "n_threads_batch": threads,
                "n_batch": LLAMA_SERVER_BATCH[0], "n_ubatch": LLAMA_SERVER_BATCH[1], "flash_attn": None,
                "type_kv": "f16", "spec_type": "none", "spec_ngram_size": DEFAULT_SPEC_SIZE, "cache_reuse": 0,
                **flags}

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        """A slot per client on every core; the same one core short for generation (a busy core stalls
        every-core decoding at its thread barriers); for several clients, one slot on one core fewer (the shortest
        inter-token gaps a machine with a busy core can hold, clients queueing for the slot: with one core busy
        here the only configuration within 50 ms for 4 clients); with n-gram speculation; then Q4_0."""
        choices = self.quant_choices(source)
        cores = max(1, hardware.cpu.usable_cores)
        clients = workload.concurrency
        points = [self._point(choices[0], clients, cores)]
        if cores > 1:
            points.append(self._point(choices[0], clients, cores - 1, n_threads_batch=cores))
            if clients > 1:
                points.append(self._point(choices[0], 1, cores - 1))
        points.append(self._point(choices[0], clients, cores, spec_type="ngram-mod"))
        if "Q4_0" in choices and choices[0] != "Q4_0":
            points.append(self._point("Q4_0", clients, cores))
        return points

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """``llama-server -m MODEL`` out of the box: auto slots (4, unified KV), ``-fa auto``, its batch sizes and
        f16 cache, and its thread count — one a physical core (llama.cpp's ``cpu_get_num_math``) — spelled out."""
        threads = max(1, min(hardware.cpu.physical_cores, hardware.cpu.usable_cores))
        return self._point(self.quant_choices(source)[0], None, threads)

    def rule_of_thumb(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """``-np 1`` on every core: one request at a time, as fast as the machine decodes one; the rest default."""
        return self._point(self.quant_choices(source)[0], 1, max(1, hardware.cpu.usable_cores))

    def for_cores(self, params: Params, cores: int) -> Params:
        """``-t`` and ``-tb`` capped at ``cores`` (one left unset stays llama-server's choice)."""
        return {**params, **{name: min(int(params[name]), cores) for name in ("n_threads", "n_threads_batch")
                             if isinstance(params.get(name), int)}}

    def load_profile(self, profile: Any) -> Any:
        """A ``llama_cpp.Llama`` with the profile's model settings (slots and speculation are the server's)."""
        import llama_cpp

        from .runtime_params import llama_kwargs

        return llama_cpp.Llama(**llama_kwargs(profile.artifact.path, in_process_params(profile.params),
                                              profile.workload.context))

    # -- predict, build, measure -----------------------------------------------------------------

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        """The in-process memory model with the KV cache of every slot (``-c`` is the context times the slots)."""
        info = self.header(source.path)
        quant = str(params["quant"]).upper()
        plan = as_is(info) if quant == self.quant_choices(source)[0] else plan_tensors(info, quant)
        settings = in_process_params(params)
        served = workload.model_copy(update={"context": workload.context * slots(server_params(params))})
        estimate = memory_model.estimate(info, plan, settings, served, hardware)
        bound = memory_model.latency_lower_bound_ms(info, plan, settings, served, hardware)
        return Prediction(memory_bytes=estimate.total, latency_lower_bound_ms=bound, breakdown=estimate.breakdown())

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        """The in-process backend's artifact; llama-server is built here, on the terminal, when none is yet."""
        ensure_binary()
        return super().prepare(source, params, workdir)

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        try:
            binary = find_binary()
        except NoServerBinary as missing:
            raise BackendUnavailable(str(missing)) from None
        return measure_server(binary, artifact.path, params, workload)

    def resident(self, artifact: Artifact, params: Params, workload: Workload) -> AbstractContextManager[ServedRound]:
        """llama-server started once for the confirmation rounds, each round one load (``resident_server``)."""
        try:
            binary = find_binary()
        except NoServerBinary as missing:
            raise BackendUnavailable(str(missing)) from None
        return resident_server(binary, artifact.path, params, workload)

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int,
                 first_row: int = 0) -> Iterator[np.ndarray]:
        """The in-process backend's, with the same model settings: llama-server runs the same llama.cpp."""
        return super().logprobs(artifact, in_process_params(params), token_ids, chunk_tokens, first_row)

    def describe(self, params: Mapping[str, Any]) -> str:
        """E.g. ``Q4_0 np=4 t=1/2 b=2048/512 fa=on kv=f16 spec=ngram-mod:12``; ``-`` where llama-server decides."""
        typed = server_params(canonical(params))

        def shown(value: object) -> str:
            return "-" if value is None else str(value)

        parts = [str(typed.quant or "?"), f"np={shown(typed.n_parallel) if typed.n_parallel else 'auto'}",
                 f"t={shown(typed.n_threads)}/{shown(typed.n_threads_batch)}",
                 f"b={shown(typed.n_batch)}/{shown(typed.n_ubatch)}",
                 f"fa={'auto' if typed.flash_attn is None else 'on' if typed.flash_attn else 'off'}",
                 f"kv={shown(typed.type_kv)}"]
        if typed.spec_type != "none":
            size = f":{typed.spec_ngram_size}" if typed.spec_type in SPEC_SIZE_FLAGS and typed.spec_ngram_size else ""
            parts.append(f"spec={typed.spec_type}{size}")
        if typed.cache_reuse:
            parts.append(f"reuse={typed.cache_reuse}")
        return " ".join(parts)
