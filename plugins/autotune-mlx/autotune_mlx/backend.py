"""The MLX backend: HF folder → MLX folder (mlx-lm), tuned and measured with mlx-lm's generation.

Artifact parameters (see ``quantization``): ``bits`` (16 = not quantized, 8, 4, 3),
``group_size`` (32/64/128), ``mixed`` (mlx-lm's ``mixed_{bits}_6`` recipe) and ``dtype``.
Runtime parameters are what mlx-lm's generation really takes: ``kv_bits`` (16, or a KV cache
quantized to 8 or 4 bits from the first token) and ``prefill_step_size`` (only searched when a
measured prompt is longer than the smallest step). MLX has no thread setting: on the GPU Metal
schedules the work, and the ``mlx[cpu]`` build runs its matrix products through a single-threaded
reference BLAS. ``max_kv_size`` is not tuned: it turns the cache into a rotating window that
forgets the start of the context, which changes answers rather than speed.

On the CPU build half precision is emulated and very slow (SmolLM2-135M, one decode step: 0.2 s
for 4-bit with float32 scales, 5 s with float16 scales; 0.36 s unquantized float32, 1 s float16),
so there only ``float32`` is searched; on Metal ``float16`` and ``bfloat16`` are.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

import autotune
from autotune import (
    Artifact,
    Availability,
    Backend,
    Categorical,
    Hardware,
    Measurement,
    ModelSource,
    Params,
    Prediction,
    SearchSpace,
    Workload,
)
from autotune.errors import AutotuneError, BackendUnavailable, ModelSourceError

from . import logprobs, memory, runner, selftest
from .convert import convert, kv_group_size
from .params import KV_BITS, MlxParams, mlx_params
from .quantization import ARTIFACT_PARAMS, BITS, GROUP_SIZES, QuantSpec
from .runtime import INSTALL_HINT, has_mlx_lm, import_mlx, import_mlx_lm, matvec_flops_per_s, runtime_info
from .settings import DEFAULT_PREFILL_STEP, RuntimeSettings

PREFILL_STEPS = (256, 512, 1024, 2048)
CPU_DTYPES = ("float32",)
GPU_DTYPES = ("float16", "bfloat16")


class MlxBackend(Backend):
    """Apple's MLX through mlx-lm: Metal GPU on Apple silicon, CPU (slowly) elsewhere."""

    name: ClassVar[str] = "mlx"
    source_formats: ClassVar[frozenset[str]] = frozenset({"hf"})
    artifact_params: ClassVar[tuple[str, ...]] = ARTIFACT_PARAMS
    params_model: ClassVar[type[BaseModel] | None] = MlxParams

    # -- what is here ---------------------------------------------------------------------------

    def not_worth_tuning(self, hardware: Hardware) -> str | None:
        if runtime_info().on_gpu:
            return None
        # Measured: about 6 tok/s for SmolLM2-135M on a 2-core x86 guest, against 113 with llama.cpp.
        return ("MLX has no Metal GPU here and runs on a single-threaded reference BLAS (about 6 tok/s for "
                "SmolLM2-135M); name it with --backend mlx to tune it anyway")

    def availability(self) -> Availability:
        """Available when mlx and mlx-lm import; says which device MLX computes on."""
        try:
            import_mlx()
        except BackendUnavailable as error:
            return Availability(available=False, reason=str(error))
        if not has_mlx_lm():
            return Availability(available=False, reason=f"mlx is installed but mlx-lm is not; {INSTALL_HINT}")
        info = runtime_info()
        device = f"Metal GPU ({info.device_info.get('device_name', 'Apple silicon')})" if info.on_gpu else (
            "CPU (the mlx[cpu] build: no Metal here, expect it to be slow)")
        details = {"device": device, "mlx": info.mlx_version, "mlx-lm": info.mlx_lm_version}
        return Availability(available=True, version=info.version, details=details)

    def self_test(self, workdir: Path) -> str | None:
        return selftest.run_matmuls()

    def inspect(self, path: Path) -> ModelSource:
        """An HF safetensors folder (a GGUF reaches here through autotune-hf's GGUF → HF conversion)."""
        from autotune import inspect_hf_folder

        path = Path(path)
        if path.is_file():
            raise ModelSourceError(
                f"the MLX backend reads Hugging Face folders, not the file {path}; convert a GGUF with the "
                "gguf → hf conversion (autotune-hf) or pass an HF folder"
            )
        source = inspect_hf_folder(path)
        _check_architecture(source)
        return source

    # -- what to tune ---------------------------------------------------------------------------

    def _dtypes(self) -> tuple[str, ...]:
        return GPU_DTYPES if runtime_info().on_gpu else CPU_DTYPES

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        """Weights (bits, group size, mixed recipe, dtype), KV-cache bits, and the prefill step when it matters."""
        space: SearchSpace = {
            "bits": Categorical(BITS),
            "group_size": Categorical(GROUP_SIZES),
            "mixed": Categorical((False, True)),
            "dtype": Categorical(self._dtypes()),
            # mlx-lm 0.32 keeps sliding-window layers in a RotatingKVCache, which it cannot quantize (measured
            # on Gemma 3: "RotatingKVCache Quantization NYI"): no KV bits for such models.
            "kv_bits": Categorical(KV_BITS if _kv_group(source) and not source.sliding_window else (16,)),
        }
        steps = _prefill_steps(workload)
        if len(steps) > 1:
            space["prefill_step_size"] = Categorical(steps)
        return space

    def _point(self, source: ModelSource, workload: Workload, bits: int, kv_bits: int = 16) -> Params:
        params: Params = {"bits": bits, "group_size": 64, "mixed": False, "dtype": self._dtypes()[0],
                          "kv_bits": kv_bits}
        if len(_prefill_steps(workload)) > 1:
            params["prefill_step_size"] = DEFAULT_PREFILL_STEP
        return params

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        """4-bit (what mlx-community publishes), 8-bit, then unquantized, all with mlx-lm's defaults."""
        return [self._point(source, workload, bits) for bits in (4, 8, 16)]

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """Unquantized (``mlx_lm.convert`` without ``-q``) in the first dtype searched, mlx-lm's generation defaults."""
        return self._point(source, workload, 16)

    def canonical_params(self, params: Mapping[str, Any]) -> Params:
        """``params`` with the settings that cannot matter normalised (same artifact, same behaviour)."""
        spec = QuantSpec.from_params(params)
        canonical = {**params, **spec.params()}
        canonical.setdefault("kv_bits", 16)
        return canonical

    def describe(self, params: Mapping[str, Any]) -> str:
        """``q4-g64-float32 kv8``: the artifact label and the non-default runtime settings."""
        label = QuantSpec.from_params(params).label
        extra = [f"kv{params['kv_bits']}"] if params.get("kv_bits", 16) < 16 else []
        if params.get("prefill_step_size", DEFAULT_PREFILL_STEP) != DEFAULT_PREFILL_STEP:
            extra.append(f"prefill{params['prefill_step_size']}")
        return " ".join([label, *extra])

    # -- before building ------------------------------------------------------------------------

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        """Weights as mlx-lm will write them, the KV cache for the context, prefill temporaries, runtime."""
        spec = QuantSpec.from_params(params)
        shape = _shape(source)
        settings = _settings(source, params)
        weights = memory.weight_bytes(_tensors(source.path), spec, shape["num_hidden_layers"])
        kv = memory.kv_bytes(shape, workload.context, spec.dtype, settings.kv_bits, settings.kv_group_size)
        longest = max(workload.prompt_tokens, workload.deep_start)
        chunk = min(settings.prefill_step_size, longest)
        activations = memory.activation_bytes(shape, chunk, longest + workload.gen_tokens, spec.dtype)
        runtime = memory.runtime_bytes(int(shape["vocab_size"]))
        breakdown = {"weights": weights, "kv_cache": kv, "activations": activations, "runtime": runtime}
        bound = None
        if not runtime_info().on_gpu:
            # Every decode step reads all weights from memory (the GPU's bandwidth is not what the probe measures)
            # and multiplies them with one vector: 2 FLOPs per weight at the measured matrix-vector speed. Half the
            # compute figure is used, so the bound stays below what any layer shape could achieve.
            matmul_weights, read = int(source.parameters or 0), weights
            if not shape.get("tie_word_embeddings", False):  # lookups are not products, nor read whole
                matmul_weights -= int(shape["vocab_size"]) * int(shape["hidden_size"])
                read -= memory.lookup_bytes(_tensors(source.path), spec, shape["num_hidden_layers"])
            bound = max(0.5 * 2 * matmul_weights / matvec_flops_per_s() * 1000,
                        autotune.decode_latency_lower_bound_ms(read, hardware) or 0.0)
        return Prediction(memory_bytes=sum(breakdown.values()), latency_lower_bound_ms=bound, breakdown=breakdown)

    # -- building and measuring -----------------------------------------------------------------

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        """Convert with ``mlx_lm.convert`` (the tuner passes ``canonical_params``, so equal artifacts share one entry)."""
        return convert(source, QuantSpec.from_params(params), workdir)

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        """Load, warm up, time the runs (and the deep run) with mlx-lm's generation; add MLX's peak memory."""
        typed = mlx_params(params)
        settings = RuntimeSettings(kv_bits=typed.kv_bits, kv_group_size=artifact.details.get("kv_group_size"),
                                   prefill_step_size=typed.prefill_step_size)
        if settings.kv_bits < 16 and settings.kv_group_size is None:
            raise AutotuneError("this model's head size is not a multiple of 32, so mlx-lm cannot quantize its KV "
                                "cache; use kv_bits=16")
        return autotune.measure_session(lambda: runner.MlxSession(artifact.path, settings, workload), workload)

    def load_profile(self, profile: Any) -> Any:
        """An ``MlxDeployment``: ``mlx_lm.load`` of the tuned folder with the runtime settings the profile measured
        (KV-cache bits and group size, prefill step), which its ``generate`` passes as the ``mlx-python`` export does."""
        from .deployment import load_deployment

        return load_deployment(Path(profile.artifact.path), profile.params, profile.artifact.details.get("kv_group_size"))

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int],
                 chunk_tokens: int) -> Iterator[np.ndarray]:
        """Float32 log-softmax of the model's logits over each chunk (fresh context per chunk)."""
        return logprobs.logprobs(artifact.path, token_ids, chunk_tokens)

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        """Token ids from the source folder's tokenizer as mlx-lm loads it (BOS added when the model wants it)."""
        return list(_tokenizer(str(source.path)).encode(text))


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    """mlx-lm's tokenizer wrapper for a folder (loading one takes a moment; quality evaluation asks often)."""
    import_mlx_lm()
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(Path(path))


@functools.lru_cache(maxsize=8)
def _tensors(path: Path) -> dict[str, list[int]]:
    return memory.source_tensors(path)


def _shape(source: ModelSource) -> dict[str, Any]:
    shape = source.metadata.get("config")
    if not isinstance(shape, dict):
        raise ModelSourceError(f"{source.path} was not inspected as an HF folder (no model dimensions); "
                               "inspect it first")
    return shape


def _kv_group(source: ModelSource) -> int | None:
    return kv_group_size(int(_shape(source)["head_dim"]))


def _settings(source: ModelSource, params: Params) -> RuntimeSettings:
    typed = mlx_params(params)
    return RuntimeSettings(kv_bits=typed.kv_bits, kv_group_size=_kv_group(source),
                           prefill_step_size=typed.prefill_step_size)


def _prefill_steps(workload: Workload) -> tuple[int, ...]:
    """Step sizes that change how the measured prompts are prefilled (the default always included)."""
    longest = max(workload.prompt_tokens, workload.deep_start)
    return tuple(step for step in PREFILL_STEPS if step < longest or step == DEFAULT_PREFILL_STEP)


def _check_architecture(source: ModelSource) -> None:
    """Raise when this mlx-lm has no implementation of the model's architecture."""
    if not has_mlx_lm():
        return  # availability() reports the missing runtime
    import importlib.util

    import_mlx_lm()
    from mlx_lm.utils import MODEL_REMAPPING

    model_type = str(source.metadata.get("model_type") or "")
    module = MODEL_REMAPPING.get(model_type, model_type)
    if not model_type or importlib.util.find_spec(f"mlx_lm.models.{module}") is None:
        raise ModelSourceError(
            f"mlx-lm {runtime_info().mlx_lm_version} has no implementation of model type {model_type!r} "
            f"({source.path}); tune this model with another backend"
        )
