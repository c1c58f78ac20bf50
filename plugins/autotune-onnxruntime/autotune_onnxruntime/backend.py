"""The ``onnxruntime`` backend: onnxruntime-genai models built from Hugging Face folders.

Search space:

- ``precision``: ``fp32``, ``int8``, ``int4`` (+ ``fp16`` when a GPU provider is usable). fp16 is
  not offered on the CPU: the builder's fp16 graph fails on the CPU provider (ORT 1.32: "Shape
  mismatch attempting to re-use buffer" in an inserted Cast), and the CPU has no fp16 matmul
  kernels anyway, so it would only run fp32 arithmetic behind casts.
- ``block_size`` (32/64/128) and ``accuracy_level`` (0 = fp32 activations, 4 = int8 activations):
  how ``int4``/``int8`` weights are quantized (``MatMulNBits``). They do not exist for float
  precisions, but the search space is flat, so the tuner may pair ``fp32`` with any of them.
  ``artifact_settings`` maps those to ``None``; ``prepare`` then builds (or reuses) the artifact
  under the normalised parameters and returns it, so ``fp32`` is built once, not once per
  ignored combination, and ``describe`` leaves them out.
- ``intra_op_num_threads`` (1..usable cores), ``allow_spinning`` (idle pool threads busy-wait,
  ONNX Runtime's default, or sleep: it matters on a shared machine), ``graph_optimization_level``
  (BASIC/ALL), ``execution_provider`` (``cpu`` plus the usable device providers the hardware
  facts list).

The source is an HF folder: the tuner converts a GGUF to one first (``autotune-hf``).
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
    Measurement,
    ModelSource,
    Params,
    Prediction,
    SearchSpace,
    Workload,
    detect_format,
    measure_session,
)
from autotune.errors import AutotuneError, ModelSourceError

from . import convert, selftest
from .convert import WEIGHT_ONLY, hf_to_onnx, weight_summary
from .memory import predict_memory
from .params import GRAPH_LEVELS, OnnxRuntimeParams
from .providers import BY_ORT, BY_SHORT, genai_can_use, usable_providers

ARTIFACT_PARAMS = ("precision", "block_size", "accuracy_level")
GPU_TARGETS = ("cuda", "dml", "webgpu")
"""Providers the model builder can shape an fp16 graph for, in order of preference."""


def artifact_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The artifact parameters that matter: ``block_size``/``accuracy_level`` become ``None`` unless int4/int8."""
    precision = params["precision"]
    if precision in WEIGHT_ONLY:
        return {"precision": precision, "block_size": params["block_size"], "accuracy_level": params["accuracy_level"]}
    return {"precision": precision, "block_size": None, "accuracy_level": None}


def _import_runtime() -> tuple[Any, Any]:
    import onnxruntime
    import onnxruntime_genai

    return onnxruntime, onnxruntime_genai


BUILDER_FAILURES = {
    "gemma3": "it reads rope_type from the rope settings that transformers 5 writes per attention type "
              "(KeyError 'rope_type', measured with onnxruntime-genai 0.18 and transformers 5.23)",
}
"""Architectures the model builder supports on paper but fails on with the installed converter stack,
as measured: checked before the GGUF → HF conversion that would otherwise be spent on them."""


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime through onnxruntime-genai, on the CPU or a usable execution provider."""

    name: ClassVar[str] = "onnxruntime"
    source_formats: ClassVar[frozenset[str]] = frozenset({"hf"})
    artifact_params: ClassVar[tuple[str, ...]] = ARTIFACT_PARAMS
    params_model: ClassVar[type[BaseModel] | None] = OnnxRuntimeParams

    def supports(self, source: ModelSource) -> str | None:
        reason = BUILDER_FAILURES.get(source.architecture or "")
        return f"the onnxruntime-genai model builder fails on {source.architecture} models: {reason}" if reason else None

    def availability(self) -> Availability:
        try:
            ort, og = _import_runtime()
        except ImportError as error:
            missing = (error.name or "onnxruntime_genai").replace("_", "-")
            return Availability(available=False,
                                reason=f"{missing} is not installed: pip install onnxruntime-genai (it brings onnxruntime)")
        builder = convert.available()
        if builder:
            return Availability(available=False, reason=builder, version=og.__version__)
        return Availability(available=True, version=og.__version__, details={"onnxruntime": ort.__version__})

    def self_test(self, workdir: Path) -> str | None:
        return selftest.run_quantized_graph()

    def runtime_identity(self) -> str:
        # The kernels are onnxruntime's; onnxruntime-genai's version alone would miss an onnxruntime upgrade.
        availability = self.availability()
        return f"genai {availability.version}, onnxruntime {availability.details.get('onnxruntime')}"

    def inspect(self, path: Path) -> ModelSource:
        from autotune import inspect_hf_folder

        fmt = detect_format(path)
        if fmt != "hf":
            raise ModelSourceError(f"the onnxruntime backend builds from a Hugging Face folder, not {fmt}: {path}")
        return inspect_hf_folder(path)

    # -- search space -------------------------------------------------------------------------

    def _providers(self, hardware: Hardware) -> list[str]:
        """Device providers the hardware facts list and onnxruntime-genai can drive."""
        found = []
        for accelerator in hardware.accelerators:
            provider = BY_ORT.get(accelerator.name)
            if accelerator.kind == "onnxruntime-ep" and provider is not None and genai_can_use(provider):
                found.append(provider.short)
        return found

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        providers = self._providers(hardware)
        precisions = ["fp32", "int8", "int4"]
        if any(p in GPU_TARGETS for p in providers):
            precisions.insert(1, "fp16")
        return {
            "precision": Categorical(tuple(precisions)),
            "block_size": Categorical((32, 64, 128)),
            "accuracy_level": Categorical((0, 4)),
            "intra_op_num_threads": IntRange(1, max(1, hardware.cpu.usable_cores)),
            "allow_spinning": Categorical((True, False)),
            "graph_optimization_level": Categorical(GRAPH_LEVELS),
            "execution_provider": Categorical(("cpu", *providers)),
        }

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        base = {"block_size": 32, "accuracy_level": 4, "intra_op_num_threads": max(1, hardware.cpu.usable_cores),
                "allow_spinning": True, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_provider": "cpu"}
        points: list[Params] = [{"precision": p, **base} for p in ("int4", "int8", "fp32")]
        gpus = [p for p in self._providers(hardware) if p in GPU_TARGETS]
        if gpus:
            points.append({**base, "precision": "fp16", "execution_provider": gpus[0]})
        return points

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """The model builder's ``-p int4 -e cpu`` defaults (block 32, int8 activations) run with ONNX Runtime's
        defaults: one intra-op thread per physical core, spinning, all graph optimizations, the CPU provider."""
        threads = max(1, min(hardware.cpu.physical_cores, hardware.cpu.usable_cores))
        return {"precision": "int4", "block_size": 32, "accuracy_level": 4, "intra_op_num_threads": threads,
                "allow_spinning": True, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_provider": "cpu"}

    def describe(self, params: Mapping[str, Any]) -> str:
        shown = {**params, **artifact_settings(params)} if "precision" in params else dict(params)
        return " ".join(f"{k}={v}" for k, v in shown.items() if v is not None)

    # -- predict, prepare, measure ------------------------------------------------------------

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        shape = source.metadata.get("config")
        if not isinstance(shape, dict) or not source.parameters:
            raise ModelSourceError(f"{source.path} was not inspected as an HF folder; cannot predict its memory")
        return predict_memory(shape, source.parameters, params, workload.prompt_tokens, workload.context, hardware)

    def _build_target(self, precision: str) -> str:
        if precision not in ("fp16", "bf16"):
            return "cpu"
        for provider in usable_providers():
            if provider.short in GPU_TARGETS and genai_can_use(provider):
                return provider.short
        raise AutotuneError(
            f"{precision} ONNX models run only on a GPU execution provider (cuda, dml, webgpu) and none is usable "
            "here; use fp32, int8 or int4 on the CPU"
        )

    def canonical_params(self, params: Params) -> Params:
        """Block size and accuracy level only matter for int4/int8 weights: drop them elsewhere."""
        return {**params, **artifact_settings(params)}

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        settings = artifact_settings(params)  # the tuner passes canonical_params already
        precision = settings["precision"]
        target = self._build_target(precision)
        out = hf_to_onnx(source.path, workdir / "model", precision, block_size=settings["block_size"],
                         accuracy_level=settings["accuracy_level"], target=target)
        summary = weight_summary(out)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        bits = summary["weight_bytes"] * 8 / source.parameters if source.parameters else 0.0
        details = {**summary, "target": target, "builder": "onnxruntime_genai.models.builder"}
        label = precision if precision not in WEIGHT_ONLY else f"{precision}-b{settings['block_size']}-a{settings['accuracy_level']}"
        return Artifact(path=out, format="onnx", precision=label, bits_per_weight=bits, size_bytes=size, details=details)

    def _check_runnable(self, artifact: Artifact, params: Mapping[str, Any]) -> None:
        if not (artifact.path / "genai_config.json").is_file():
            raise AutotuneError(f"artifact missing or incomplete: {artifact.path} (no genai_config.json); rebuild it")
        provider = str(params.get("execution_provider", "cpu"))
        if provider != "cpu" and provider not in BY_SHORT:
            raise AutotuneError(f"unknown execution provider {provider!r}; use cpu or one of {', '.join(BY_SHORT)}")
        if artifact.details.get("target", "cpu") != "cpu" and provider == "cpu":
            raise AutotuneError(f"this {artifact.precision} model was built for {artifact.details['target']}; "
                                "it does not run on the CPU provider")

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        from .runner import GenaiSession

        self._check_runnable(artifact, params)
        measurement = measure_session(lambda: GenaiSession(artifact.path, params, workload), workload)
        measurement.context["execution_provider"] = params.get("execution_provider", "cpu")
        return measurement

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
        from .logprobs import iter_logprobs

        self._check_runnable(artifact, params)
        return iter_logprobs(artifact.path, params, token_ids, chunk_tokens)

    def load_profile(self, profile: Any) -> Any:
        """A ``GenaiDeployment``: the artifact's ``og.Model`` with the profile's session options and provider (as
        measured, and as its ``onnxruntime-python`` export builds it), its tokenizer and the measured context."""
        from .deployment import load_deployment

        info = profile.artifact
        artifact = Artifact(path=Path(info.path), format=info.format, precision=info.precision,
                            bits_per_weight=info.bits_per_weight, size_bytes=info.size_bytes, details=info.details)
        self._check_runnable(artifact, profile.params)
        return load_deployment(artifact.path, profile.params, profile.workload)

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        from .tokens import encode

        return encode(source.path, text)

