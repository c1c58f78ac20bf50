"""The ``llamacpp-server`` backend's parameters and the one place its ``llama-server`` command line is built.

The measurement starts exactly ``server_argv(...)``, and the profile's export renders the same list, so what a
user deploys is what was measured: the same binary, the same flags, ``-np`` as measured.

A runtime setting left ``None`` is not passed at all, so llama-server decides it as it does for a user who gives
no flag: ``ServerParams(quant=...)`` with nothing else is llama-server's own defaults (the untuned baseline).
Flags of this build (the llama.cpp vendored in llama-cpp-python 0.3.36, ``common/arg.cpp``): ``-fa`` takes
``on|off|auto``; ``-np`` unset means auto (4 slots sharing one unified KV cache); the n-gram speculation kinds
take their sizes through their own flags (``--spec-ngram-mod-n-match``, ``--spec-ngram-<kind>-size-n``).

The context: ``workload.context`` is what each client's request may use, so the server gets it once per slot
(``-c context × slots``; auto counts as ``AUTO_SLOTS``, sharing the whole unified cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from autotune import MAX_THREADS, Workload, validate_params

from .params import MAX_BATCH, KvCacheType
from .runtime_params import kv_cache_types

BACKEND_NAME = "llamacpp-server"

SpecType = Literal["none", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache"]
"""``--spec-type`` values that need no draft model (the draft-* kinds need a second model autotune does not pick)."""

SPEC_TYPES: tuple[str, ...] = get_args(SpecType)

SPEC_SIZE_FLAGS: dict[str, str] = {
    # The n-gram length each kind looks up; ngram-cache reads its statistics from files and has no size here.
    "ngram-mod": "--spec-ngram-mod-n-match",
    "ngram-simple": "--spec-ngram-simple-size-n",
    "ngram-map-k": "--spec-ngram-map-k-size-n",
    "ngram-map-k4v": "--spec-ngram-map-k4v-size-n",
}
"""The flag setting ``spec_ngram_size`` for each speculation kind that has one."""

AUTO_SLOTS = 4
"""Slots llama-server opens when ``-np`` is not given (server.cpp: ``n_parallel = 4`` with a unified KV cache)."""

MAX_SLOTS = 256
"""Largest ``n_parallel`` accepted: far beyond what a CPU serves, and small enough that -c stays an int."""


class ServerParams(BaseModel):
    """One llama-server configuration (``quant`` builds the artifact; the rest are its flags, ``None`` = not given)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    quant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,32}$",
                              description="llama.cpp file type of the artifact, e.g. Q4_K_M (the source's own: as is)")
    n_threads: int | None = Field(default=None, ge=1, le=MAX_THREADS,
                                  description="-t: threads generating; null: llama-server's default")
    n_threads_batch: int | None = Field(default=None, ge=1, le=MAX_THREADS,
                                        description="-tb: threads processing prompts; null: as -t")
    n_parallel: int | None = Field(default=None, ge=1, le=MAX_SLOTS,
                                   description="-np: slots (requests decoded together); null: auto (4, unified KV)")
    n_batch: int | None = Field(default=None, ge=1, le=MAX_BATCH, description="-b: logical batch; null: 2048")
    n_ubatch: int | None = Field(default=None, ge=1, le=MAX_BATCH, description="-ub: physical batch; null: 512")
    flash_attn: bool | None = Field(default=None, description="-fa on/off; null: auto")
    type_kv: KvCacheType | None = Field(default=None,
                                        description="-ctk/-ctv: KV-cache type; V stays f16 unless flash attention "
                                                    "is on; null: f16")
    spec_type: SpecType = Field(default="none", description="--spec-type: n-gram speculation without a draft model")
    spec_ngram_size: int | None = Field(default=None, ge=1, le=1024,
                                        description="the n-gram length of spec_type (its size flag); null: its default")
    cache_reuse: int = Field(default=0, ge=0, le=1_000_000,
                             description="--cache-reuse: smallest chunk reused from the cache by shifting; 0: off")


def server_params(params: ServerParams | Mapping[str, Any]) -> ServerParams:
    """``params`` validated; ``ProfileError`` names the first bad parameter and what it accepts."""
    return validate_params(ServerParams, params, BACKEND_NAME)


def slots(params: ServerParams) -> int:
    """How many requests the server decodes together: ``-np``, or the slots llama-server opens by itself."""
    return params.n_parallel or AUTO_SLOTS


def server_argv(binary: Path | str, model_path: Path | str, params: ServerParams | Mapping[str, Any],
                workload: Workload, port: int) -> list[str]:
    """The ``llama-server`` command serving ``model_path`` with ``params`` on 127.0.0.1:``port``.

    ``params`` is validated first (``ProfileError`` names a bad one). The command always states the model,
    the context (``workload.context`` per slot), the address and ``--no-webui``; every other flag appears
    only when its parameter is set.
    """
    typed = server_params(params)
    argv = [str(binary), "-m", str(model_path), "-c", str(workload.context * slots(typed))]
    if typed.n_threads is not None:
        argv += ["-t", str(typed.n_threads)]
    if typed.n_threads_batch is not None:
        argv += ["-tb", str(typed.n_threads_batch)]
    if typed.n_parallel is not None:
        argv += ["-np", str(typed.n_parallel)]
    if typed.n_batch is not None:
        argv += ["-b", str(typed.n_batch)]
    if typed.n_ubatch is not None:
        argv += ["-ub", str(typed.n_ubatch)]
    if typed.flash_attn is not None:
        argv += ["-fa", "on" if typed.flash_attn else "off"]
    if typed.type_kv is not None:
        # A quantized V cache needs flash attention (auto counts as not known to be on): the in-process rule.
        type_k, type_v = kv_cache_types(typed.type_kv, typed.flash_attn is True)
        argv += ["-ctk", type_k, "-ctv", type_v]
    if typed.spec_type != "none":
        argv += ["--spec-type", typed.spec_type]
        flag = SPEC_SIZE_FLAGS.get(typed.spec_type)
        if flag is not None and typed.spec_ngram_size is not None:
            argv += [flag, str(typed.spec_ngram_size)]
    if typed.cache_reuse:
        argv += ["--cache-reuse", str(typed.cache_reuse)]
    # Loopback only: the tuner's load generator is the only client; no web UI (this build has none to serve).
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-webui"]
    return argv


def canonical(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` spelled one way: a size only where the speculation kind has one, n_ubatch ≤ n_batch."""
    spelled = dict(params)
    if spelled.get("spec_type", "none") not in SPEC_SIZE_FLAGS:
        spelled["spec_ngram_size"] = None
    n_batch, n_ubatch = spelled.get("n_batch"), spelled.get("n_ubatch")
    if isinstance(n_batch, int) and isinstance(n_ubatch, int) and n_ubatch > n_batch:
        spelled["n_ubatch"] = n_batch  # llama.cpp caps the physical batch at the logical one
    return spelled
