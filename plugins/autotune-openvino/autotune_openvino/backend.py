"""The ``openvino`` backend: NNCF-compressed stateful IRs run by the OpenVINO runtime.

It reads OpenVINO IR folders (``openvino_model.xml`` + ``tokenizer.json``); the plugin's
hf → openvino conversion makes one from a Hugging Face folder, and with the gguf → hf
conversion of another plugin the tuner reaches it from a GGUF file too.

Artifact parameter: ``weight_format`` (fp16, int8, int4 recipes; see ``weight_formats``).
Runtime parameters: ``device``, ``threads`` (``INFERENCE_NUM_THREADS``), ``performance_hint``,
``inference_precision`` (``INFERENCE_PRECISION_HINT``) and ``kv_cache_precision``.
"""

from __future__ import annotations

import shutil
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
    IntRange,
    Measurement,
    ModelSource,
    Params,
    Prediction,
    SearchSpace,
    Workload,
    cached_content_hash,
)
from autotune.errors import AutotuneError, ModelSourceError

from . import selftest
from .convert import IR_FILE, missing_modules
from .ir_info import IrInfo, read_ir_info
from .logprobs import iter_logprobs
from .params import KV_CACHE_PRECISIONS, PERFORMANCE_HINTS, OpenVinoParams
from .runner import DEEP_FILL_CHUNK, OpenVinoSession
from .tokens import load_tokenizer
from .weight_formats import SOURCE, WEIGHT_FORMATS, compress, predicted_weight_bytes, weight_format

REQUIRED_MODULES = ("openvino", "nncf", "tokenizers")

BF16_FEATURES = {"avx512_bf16", "amx_bf16", "bf16"}
F16_FEATURES = {"avx512_fp16", "amx_fp16", "fp16", "asimdhp", "fphp"}

UNTUNED_INT8_PARAMETERS = 1_000_000_000
"""optimum-cli exports models above a billion parameters with int8 weights by default, smaller ones in fp16."""

# Peak RSS = runtime + mapped weight file + the CPU plugin's packed copy of the weights + KV cache +
# prefill activations and attention scores. Fitted on the worker's own peak (VmHWM), SmolLM2-135M,
# 2 threads: prompt 128 → fp16 680 MiB, int8 435, int4_asym_g64 354 (f32 and bf16 alike: float
# weights stay 16-bit); prompt 128 + deep run at 1984 → int4_sym_g128/u8 432, fp16/f32/f32 891;
# prompt 1024 + deep 1900 → int4/bf16/u8 437, fp16/f32/f16 800; the tiny 0.4M llama 120 MiB.
# Predictions land within ±4% of these. The weight file stays mapped while the plugin holds its own
# packed copy with decompression tables; the KV cache grows with headroom beyond the tokens held.
RUNTIME_OVERHEAD_BYTES = 118 * 2**20
PACKED_BYTES_PER_PARAMETER = 0.4
ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN = 64
KV_HEADROOM = 1.5


class OpenVINOBackend(Backend):
    """OpenVINO runtime over a stateful IR with the KV cache as internal state."""

    name: ClassVar[str] = "openvino"
    source_formats: ClassVar[frozenset[str]] = frozenset({"openvino"})
    artifact_params: ClassVar[tuple[str, ...]] = ("weight_format",)
    params_model: ClassVar[type[BaseModel] | None] = OpenVinoParams

    def __init__(self) -> None:
        self._availability: Availability | None = None

    # -- availability and sources ---------------------------------------------------------------

    def supports(self, source: ModelSource) -> str | None:
        # The converter traces plain full-attention caches only (convert.py refuses a DynamicSlidingWindowLayer
        # after minutes of loading and tracing; the metadata says so at once).
        if source.sliding_window:
            return (f"{source.architecture or 'this model'} keeps a sliding-window KV cache ({source.sliding_window} "
                    "tokens), and only plain full-attention caches convert to OpenVINO here")
        return None

    def availability(self) -> Availability:
        if self._availability is None:
            self._availability = self._check_availability()
        return self._availability

    @staticmethod
    def _check_availability() -> Availability:
        missing = missing_modules(REQUIRED_MODULES)
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: pip install {' '.join(missing)}")
        try:
            import openvino as ov

            devices = ov.Core().available_devices
        except Exception as error:  # noqa: BLE001 - a broken install must not break the tuner
            return Availability(False, f"openvino failed to start: {error!r}; reinstall openvino")
        version = ov.get_version().split("-")[0]
        return Availability(True, version=version, details={"devices": ",".join(devices)})

    def self_test(self, workdir: Path) -> str | None:
        return selftest.run_tiny_model()

    def inspect(self, path: Path) -> ModelSource:
        xml = path / IR_FILE
        if not xml.is_file():
            raise ModelSourceError(f"{path} is not an OpenVINO IR folder (no {IR_FILE}); convert the model first")
        info = read_ir_info(xml)
        missing = {"input_ids", "attention_mask", "position_ids", "beam_idx"} - set(info.inputs)
        if missing or info.kv_layers == 0:
            raise ModelSourceError(
                f"{path} is not a stateful LLM IR (missing {', '.join(sorted(missing)) or 'KV-cache state'}); "
                "convert the HF folder with autotune's hf-to-openvino conversion"
            )
        if not (path / "tokenizer.json").is_file():
            raise ModelSourceError(f"{path} has no tokenizer.json; copy the HF tokenizer.json next to {IR_FILE}")
        config = _read_json(path / "config.json")
        architectures = config.get("architectures") or [None]
        return ModelSource(
            path=path, format="openvino", sha256=cached_content_hash(path),
            architecture=config.get("model_type") or architectures[0], parameters=info.parameters,
            precision=info.precision,
            metadata={
                "weight_elements": info.weight_elements, "backup_elements": info.backup_elements,
                "bin_bytes": info.bin_bytes, "kv_layers": info.kv_layers, "kv_heads": info.kv_heads,
                "head_dim": info.head_dim, "vocab": info.vocab, "hidden": info.hidden, "compressed": info.compressed,
            },
        )

    # -- search space ---------------------------------------------------------------------------

    def search_space(self, source: ModelSource, hardware: Hardware, workload: Workload) -> SearchSpace:
        return {
            "weight_format": Categorical(self._weight_formats(source)),
            "device": Categorical(self._devices(hardware)),
            "threads": IntRange(1, max(1, hardware.cpu.usable_cores)),
            "performance_hint": Categorical(PERFORMANCE_HINTS),
            "inference_precision": Categorical(self._precisions(hardware)),
            "kv_cache_precision": Categorical(KV_CACHE_PRECISIONS),
        }

    @staticmethod
    def _weight_formats(source: ModelSource) -> tuple[str, ...]:
        # Requantizing an already integer IR never beats it: keep it as it is.
        return (SOURCE,) if source.metadata.get("compressed") else tuple(WEIGHT_FORMATS)

    @staticmethod
    def _devices(hardware: Hardware) -> tuple[str, ...]:
        return ("CPU", *(a.name for a in hardware.accelerators if a.kind == "openvino" and a.name != "CPU"))

    @staticmethod
    def _precisions(hardware: Hardware) -> tuple[str, ...]:
        features = set(hardware.cpu.features)
        choices = ["f32"]
        if features & BF16_FEATURES:
            choices.append("bf16")
        if features & F16_FEATURES:
            choices.append("f16")
        return tuple(choices)

    def _default_precision(self, hardware: Hardware) -> str:
        """The CPU plugin's own default: bf16 where the CPU has it, else f16 on ARM, else f32."""
        choices = self._precisions(hardware)
        if "bf16" in choices:
            return "bf16"
        if "f16" in choices and hardware.cpu.architecture in {"aarch64", "arm64"}:
            return "f16"
        return "f32"

    def starting_points(self, source: ModelSource, hardware: Hardware, workload: Workload) -> list[Params]:
        threads = max(1, hardware.cpu.usable_cores)
        runtime = {"device": "CPU", "threads": threads, "performance_hint": "LATENCY",
                   "inference_precision": self._default_precision(hardware), "kv_cache_precision": "u8"}
        formats = self._weight_formats(source)
        if formats == (SOURCE,):
            return [{"weight_format": SOURCE, **runtime}]
        # 4-bit weights are usually fastest on CPU (decode is memory bound); int8 is the safe quality point.
        return [{"weight_format": "int4_asym_g64", **runtime}, {"weight_format": "int8", **runtime},
                self.untuned_params(source, hardware, workload)]

    def untuned_params(self, source: ModelSource, hardware: Hardware, workload: Workload) -> Params:
        """What ``compile_model(ir, "CPU")`` gives an optimum-cli export: every core, LATENCY, default precisions."""
        formats = self._weight_formats(source)
        if formats == (SOURCE,):
            fmt = SOURCE
        else:
            fmt = "int8" if (source.parameters or 0) > UNTUNED_INT8_PARAMETERS else "fp16"
        return {"weight_format": fmt, "device": "CPU", "threads": max(1, hardware.cpu.usable_cores),
                "performance_hint": "LATENCY", "inference_precision": self._default_precision(hardware),
                "kv_cache_precision": "u8"}

    def describe(self, params: Mapping[str, Any]) -> str:
        parts = [str(params.get("weight_format")), str(params.get("device", "CPU"))]
        if str(params.get("device", "CPU")).startswith("CPU"):
            parts.append(f"{params.get('threads')}t")
        parts += [str(params.get("performance_hint", "")).lower(), str(params.get("inference_precision")),
                  f"kv:{params.get('kv_cache_precision')}"]
        return " ".join(parts)

    # -- predict, prepare -----------------------------------------------------------------------

    def predict(self, source: ModelSource, params: Params, workload: Workload, hardware: Hardware) -> Prediction:
        parameters = int(source.parameters or 0)
        fmt = params.get("weight_format", SOURCE)
        if fmt == SOURCE:
            file_bytes = _meta_int(source, "bin_bytes", 2 * parameters)
        else:
            file_bytes = predicted_weight_bytes(weight_format(fmt), parameters, _meta_int(source, "backup_elements"))
        tokens = max(workload.prompt_tokens, workload.deep_start) + workload.gen_tokens
        # The prompt is prefilled in one step; the deep run fills the cache in chunks.
        deep_chunk = min(workload.deep_start, DEEP_FILL_CHUNK)
        prefill = max(workload.prompt_tokens, deep_chunk)
        hidden, head_dim = _meta_int(source, "hidden"), _meta_int(source, "head_dim")
        query_heads = hidden // head_dim if head_dim else 0
        scores = max(workload.prompt_tokens ** 2, deep_chunk * workload.deep_start) * query_heads * 4
        breakdown = {
            "weights_file": file_bytes,
            "weights_packed": file_bytes + int(PACKED_BYTES_PER_PARAMETER * parameters),
            "kv_cache": int(KV_HEADROOM * self.kv_cache_bytes(source, params, tokens)),
            "activations": prefill * hidden * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN + scores,
            "runtime": RUNTIME_OVERHEAD_BYTES,
        }
        bound = None
        if str(params.get("device", "CPU")).startswith("CPU"):  # the probe measures the CPU's memory bandwidth
            # The embedding is only looked up: take off as many bytes as it could have (4 per weight in a given IR,
            # at most 2 in one built here), so the bound errs low.
            lookup = _meta_int(source, "vocab") * hidden * (4 if fmt == SOURCE else 2)
            bound = autotune.decode_latency_lower_bound_ms(file_bytes - lookup, hardware)
        return Prediction(memory_bytes=sum(breakdown.values()), latency_lower_bound_ms=bound, breakdown=breakdown)

    @staticmethod
    def kv_cache_bytes(source: ModelSource, params: Params, tokens: int) -> int:
        """Bytes of the stateful KV cache holding ``tokens`` positions at ``kv_cache_precision``."""
        head_dim = _meta_int(source, "head_dim")
        precision = params.get("kv_cache_precision", "u8")
        per_element = {"u8": 1.0, "f16": 2.0, "bf16": 2.0, "f32": 4.0}.get(precision, 2.0)
        if precision == "u8":
            # u8 keeps a float scale and zero point per head and position.
            per_element += 8 / max(head_dim, 1)
        return autotune.kv_cache_bytes(layers=_meta_int(source, "kv_layers"), kv_heads=_meta_int(source, "kv_heads"),
                                       head_dim=head_dim, context=tokens, bytes_per_element=per_element)

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        import openvino as ov

        fmt = params.get("weight_format", SOURCE)
        recipe = None if fmt == SOURCE else weight_format(fmt)
        if recipe is None or (recipe.mode is None and source.precision == "fp16"):
            # Nothing to build: the (converted) source already is this artifact, so it is not copied.
            info = read_ir_info(source.path / IR_FILE)
            return self._artifact(source.path, info, fmt if recipe else info.precision, {"kept": "source IR as given"})
        if source.metadata.get("compressed"):
            raise AutotuneError(f"{source.path} already has {source.precision} weights; use weight_format='source'")
        core = ov.Core()
        model = core.read_model(str(source.path / IR_FILE))
        model = compress(model, recipe)
        ov.save_model(model, str(workdir / IR_FILE), compress_to_fp16=True)
        del model
        for item in source.path.iterdir():  # tokenizer files, tokenizer IRs, configs
            if item.is_file() and item.name not in {IR_FILE, Path(IR_FILE).with_suffix(".bin").name}:
                shutil.copy2(item, workdir / item.name)
        info = read_ir_info(workdir / IR_FILE, core)
        details = {"mode": recipe.mode or "fp16", "group_size": recipe.group_size, "ratio": recipe.ratio}
        return self._artifact(workdir, info, fmt, details)

    @staticmethod
    def _artifact(path: Path, info: IrInfo, precision: str, details: dict[str, Any]) -> Artifact:
        return Artifact(
            path=path, format="openvino", precision=precision, bits_per_weight=round(info.bits_per_weight(), 3),
            size_bytes=sum(p.stat().st_size for p in path.iterdir() if p.is_file()),
            details={**details, "weight_tensors": info.weight_tensors, "weight_elements": info.weight_elements,
                     "group_sizes": info.group_sizes, "bin_bytes": info.bin_bytes},
        )

    # -- running --------------------------------------------------------------------------------

    def measure(self, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
        tokenizer = load_tokenizer(artifact.path)  # not part of the timed model load
        return autotune.measure_session(
            lambda: OpenVinoSession(artifact.path, params, tokenizer, workload.prompt_tokens), workload)

    def logprobs(self, artifact: Artifact, params: Params, token_ids: list[int], chunk_tokens: int) -> Iterator[np.ndarray]:
        return iter_logprobs(artifact.path, params, token_ids, chunk_tokens)

    def tokenize(self, source: ModelSource, text: str) -> list[int]:
        return list(load_tokenizer(source.path).encode(text).ids)

    def load_profile(self, profile: Any) -> Any:
        """An ``openvino_genai.LLMPipeline`` on the tuned IR with the profile's device and compile properties
        (``INFERENCE_NUM_THREADS``, ``PERFORMANCE_HINT``, ``INFERENCE_PRECISION_HINT``, ``KV_CACHE_PRECISION``) and
        the stateful SDPA cache autotune measured: the same pipeline as its ``openvino-genai`` export."""
        from .genai import load_pipeline

        return load_pipeline(Path(profile.artifact.path), profile.params)


def _meta_int(source: ModelSource, key: str, default: int = 0) -> int:
    """An integer that ``inspect`` stored in the source's metadata."""
    value = source.metadata.get(key)
    return int(value) if isinstance(value, (int, float)) else default


def _read_json(path: Path) -> dict[str, Any]:
    from autotune import UnreadableFile, read_json

    try:
        data = read_json(path)  # bounded and never a FIFO: the user's folder may hold anything
    except UnreadableFile:
        return {}
    return data if isinstance(data, dict) else {}
