"""The llama.cpp backend (through llama-cpp-python): GGUF in, GGUF out, measured in-process in a worker.

Search space (parameter names as stored in studies and profiles):

- ``quant``: llama.cpp file type of the artifact — the source's own type first (used as is),
  then lower-precision types from ``quant_types.CANDIDATES`` (never upward from a quantized
  source). Types llama.cpp would refuse for this model's shapes are left out.
- ``n_threads``: 1 … usable cores (used for both generation and batch/prompt processing).
- ``n_batch``: 256, 512, 2048 (logical batch; llama-cpp-python caps it at the context).
- ``n_ubatch``: 128, 512 (physical micro-batch; capped at ``n_batch``).
- ``flash_attn``: False, True.
- ``type_kv``: f16, q8_0, q4_0 — the KV-cache type; with ``flash_attn=False`` it applies to K
  only and V stays f16 (llama.cpp needs flash attention for a quantized V cache).
- ``use_mmap``: True, False.
- ``n_gpu_layers``: 0 or every layer (n_layer + 1), only when the machine has a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from autotune import (
    Artifact,
    Availability,
    Backend,
    Categorical,
    Hardware,
    IntRange,
    KeptFill,
    Measurement,
    ModelSource,
    Params,
    Prediction,
    SearchSpace,
    Workload,
    cached_content_hash,
    kept_fill,
    measure_session,
    usable_cores_here,
)
from autotune.errors import AutotuneError, ModelSourceError

from . import memory_model, runner, runtime_info, selftest
from .gguf_info import GgufInfo, read_gguf_info
from .logprobs import iter_logprobs
from .params import KV_TYPES, LLAMA_CPP_PYTHON_DEFAULTS, LlamaCppParams
from .quant_types import reachable_types
from .quantize import describe_file, quantize
from .runtime_params import kv_cache_types, llama_kwargs
from .tensor_plan import as_is, plan_tensors
from .tokens import tokenize_text

N_BATCH_CHOICES = (256, 512, 2048)
N_UBATCH_CHOICES = (128, 512)
MAX_NAME = 200
"""Characters of the source's name in a built file's name (file systems take 255)."""


class LlamaCppBackend(Backend):
    """llama.cpp through llama-cpp-python: quantizes GGUF files and measures them in a worker."""

    name: ClassVar[str] = "llamacpp"
    source_formats: ClassVar[frozenset[str]] = frozenset({"gguf"})
    artifact_params: ClassVar[tuple[str, ...]] = ("quant",)
    # A quantized KV cache changes every next-token distribution; flash attention decides whether V is quantized
    # too (``kv_cache_types``) and computes attention differently; offloaded layers run other kernels. Threads,
    # batch sizes and mmap leave the outputs alone, so configurations differing only in those share one score.
    output_params: ClassVar[tuple[str, ...]] = ("type_kv", "flash_attn", "n_gpu_layers")
    params_model: ClassVar[type[BaseModel] | None] = LlamaCppParams

    def __init__(self) -> None:
        self._headers: dict[tuple[str, int, int], GgufInfo] = {}

    def __getstate__(self) -> dict[str, Any]:
        # The backend travels to the worker by pickle; the header memo is only useful here.
        return {**self.__dict__, "_headers": {}}

    # -- what the runtime and the model are ------------------------------------------------

    def availability(self) -> Availability:
        return runtime_info.availability()

    def self_test(self, workdir: Path) -> str | None:
        return selftest.decode_tiny_model(workdir)

    def runtime_identity(self) -> str:
        return selftest.build_identity()

    def crash_advice(self, signal_name: str) -> str:
        return selftest.crash_advice(signal_name, self.availability().details.get("cpu_features", ""))

    def header(self, path: Path) -> GgufInfo:
        """The GGUF header of ``path``, memoised on (path, size, mtime)."""
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._headers:
            self._headers[key] = read_gguf_info(Path(path))
        return self._headers[key]

    def inspect(self, path: Path) -> ModelSource:
        info = self.header(path)
        if not info.tensors:
            raise ModelSourceError(f"{path} holds no tensors (a vocabulary-only GGUF?); pass a full model")
        metadata: dict[str, object] = {
            "n_layer": info.n_layer,
            "n_head": info.n_head,
            "n_head_kv": info.n_head_kv,
            "n_embd": info.n_embd,
            "head_dim": info.head_dim_k,
            "context_length": info.context_length,
            "vocab_size": info.vocab_size,
            "tensor_types": info.tensor_type_counts(),
            "file_type": info.file_type,
        }
        if info.sliding_window:
            metadata["sliding_window"] = info.sliding_window
        return ModelSource(path=Path(path), format="gguf", sha256=cached_content_hash(Path(path)),
                           architecture=info.architecture, parameters=info.parameters,
                           precision=info.precision, metadata=metadata)

    def quant_choices(self, source: ModelSource) -> list[str]:
        """File types reachable from ``source``: its own type first (the file as it is), then lower ones."""
        info = self.header(source.path)
        return reachable_types((source.precision or info.precision).upper(), info.dominant_type())

    # -- search space -----------------------------------------------------------------------

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        space: SearchSpace = {
            "quant": Categorical(tuple(self.quant_choices(source))),
            "n_threads": IntRange(1, max(1, hardware.cpu.usable_cores)),
            "n_batch": Categorical(N_BATCH_CHOICES),
            "n_ubatch": Categorical(N_UBATCH_CHOICES),
            "flash_attn": Categorical((False, True)),
            "type_kv": Categorical(KV_TYPES),
            "use_mmap": Categorical((True, False)),
        }
        if hardware.has_gpu():
            space["n_gpu_layers"] = Categorical((0, self.header(source.path).n_layer + 1))
        return space

    def _defaults(self, quant: str, threads: int, hardware: Hardware) -> Params:
        params: Params = {"quant": quant, "n_threads": threads,
                          **{k: v for k, v in LLAMA_CPP_PYTHON_DEFAULTS.items() if k != "n_gpu_layers"}}
        if hardware.has_gpu():
            params["n_gpu_layers"] = 0
        return params

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        """The source as is with every usable core and llama-cpp-python's defaults; then Q4_0; then full offload."""
        choices = self.quant_choices(source)
        cores = max(1, hardware.cpu.usable_cores)
        points = [self._defaults(choices[0], cores, hardware)]
        if "Q4_0" in choices and choices[0] != "Q4_0":
            points.append(self._defaults("Q4_0", cores, hardware))
        if hardware.has_gpu():
            points.append({**points[0], "n_gpu_layers": self.header(source.path).n_layer + 1})
        return points

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """``llama_cpp.Llama(model_path=...)`` out of the box: cpu_count() // 2 threads, its defaults, the source file.

        (llama-cpp-python also sets n_threads_batch = cpu_count(); autotune measures one thread count
        for both, so the baseline's prompt speed may differ slightly from the real default.)
        """
        threads = min(max(hardware.cpu.logical_cores // 2, 1), max(1, hardware.cpu.usable_cores))
        return self._defaults(self.quant_choices(source)[0], threads, hardware)

    def load_profile(self, profile: Any) -> Any:
        """A ``llama_cpp.Llama`` with the profile's tuned settings (the same as its llama-cpp-python export)."""
        import llama_cpp

        kwargs = llama_kwargs(profile.artifact.path, profile.params, profile.workload.context)
        return llama_cpp.Llama(**kwargs)

    def for_cores(self, params: Params, cores: int) -> Params:
        """``n_threads`` capped at ``cores`` (prompt and generation share it)."""
        threads = params.get("n_threads")
        return {**params, "n_threads": min(int(threads), cores)} if isinstance(threads, int) and threads else dict(params)

    def rule_of_thumb(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """``Llama(model_path, n_threads=<physical cores>)``: the source file, every physical core, the defaults."""
        cores = max(1, min(hardware.cpu.physical_cores, hardware.cpu.usable_cores))
        return self._defaults(self.quant_choices(source)[0], cores, hardware)

    # -- predict, build, measure --------------------------------------------------------------

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        info = self.header(source.path)
        quant = str(params["quant"]).upper()
        # The source's own type means the file as it is; other types are planned like llama.cpp does.
        plan = as_is(info) if quant == self.quant_choices(source)[0] else plan_tensors(info, quant)
        estimate = memory_model.estimate(info, plan, params, workload, hardware)
        bound = memory_model.latency_lower_bound_ms(info, plan, params, workload, hardware)
        return Prediction(memory_bytes=estimate.total, latency_lower_bound_ms=bound, breakdown=estimate.breakdown())

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        quant = str(params["quant"]).upper()
        info = self.header(source.path)
        choices = self.quant_choices(source)
        if quant not in choices:
            raise AutotuneError(
                f"cannot build {quant} from {source.name} ({info.precision}): reachable types are {', '.join(choices)}"
            )
        extra: dict[str, object] = {}
        if info.sliding_window:
            extra["sliding_window"] = info.sliding_window  # exporters keep the full-size SWA cache that was measured
        if quant == choices[0]:
            # The source already is this type: deploy the file itself (the cache records its path).
            return describe_file(Path(source.path), quant, info, extra={**extra, "source_file": True})
        destination = workdir / f"{source.name[:MAX_NAME]}-{quant}.gguf"  # within 255 for any source name
        seconds = quantize(info, quant, destination, threads=usable_cores_here())
        return describe_file(destination, quant, info, seconds=seconds, extra=extra)

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        return measure_session(lambda: runner.LlamaSession(artifact.path, params, workload.context), workload,
                               kept=self.kept_fill(artifact, params, workload))

    def kept_fill(self, artifact: Artifact, params: Params, workload: Workload) -> KeptFill | None:
        """Where the deep run's fill is kept for the next measurement whose cache holds the same values: the same
        file, KV types, attention kernel, micro-batch, context and depth; threads, batch size and mmap change none
        of them. Its last micro-batch is always prefilled.

        None for a model with sliding-window layers (Gemma 3): llama.cpp saves only the window of their cache, so a
        loaded one holds 1,024 positions where a prefilled one holds 1,984, and its decode steps at depth ran 5-8%
        faster than the deployment's would (``bench/kept_fill.py``); those fills are prefilled every time.
        """
        if self.header(Path(artifact.path)).sliding_window:
            return None
        status = Path(artifact.path).stat()
        settings = {k: v for k, v in params.items() if k not in {"n_threads", "n_threads_batch", "n_batch", "use_mmap"}}
        micro_batch = min(int(params.get(k, LLAMA_CPP_PYTHON_DEFAULTS[k])) for k in ("n_batch", "n_ubatch"))
        return kept_fill({"backend": self.name, "runtime": self.runtime_identity(), "artifact": str(artifact.path),
                          "size": status.st_size, "mtime_ns": status.st_mtime_ns, "params": settings,
                          "context": workload.context, "depth": workload.deep_start}, tail=micro_batch)

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int,
                 first_row: int = 0) -> Iterator[np.ndarray]:
        return iter_logprobs(artifact.path, params, token_ids, chunk_tokens, first_row)

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        return tokenize_text(source.path, text)

    def describe(self, params: Mapping[str, Any]) -> str:
        """E.g. ``Q4_0 t=2 b=512/512 fa=off kv=q8_0/f16 (V f16: needs fa) mmap``."""
        merged = {**LLAMA_CPP_PYTHON_DEFAULTS, **params}
        type_k, type_v = kv_cache_types(str(merged["type_kv"]), bool(merged["flash_attn"]))
        kv = type_k if type_k == type_v else f"{type_k}/{type_v}"
        if type_k != type_v and not merged["flash_attn"]:
            kv += " (V f16: needs fa)"
        parts = [str(merged.get("quant", "?")), f"t={merged.get('n_threads', '?')}",
                 f"b={merged['n_batch']}/{merged['n_ubatch']}", f"fa={'on' if merged['flash_attn'] else 'off'}",
                 f"kv={kv}", "mmap" if merged["use_mmap"] else "no-mmap"]
        if merged.get("n_gpu_layers"):
            parts.append(f"ngl={merged['n_gpu_layers']}")
        return " ".join(parts)

