"""HF folder → ONNX model folder with the onnxruntime-genai model builder.

The builder (``python -m onnxruntime_genai.models.builder``) writes ``model.onnx`` (+
``model.onnx.data``), ``genai_config.json`` and the tokenizer files: a folder onnxruntime-genai
runs as is and plain ONNX Runtime (or OpenVINO) can load. Precisions:

- ``fp32`` / ``fp16`` / ``bf16``: float weights (the fp16 graph targets GPUs; see ``backend.py``).
- ``int8`` / ``int4``: weight-only block quantization (``MatMulNBits``; a tied embedding becomes
  ``GatherBlockQuantized``), ``block_size`` weights per fp32 scale, symmetric (no zero points).
  ``accuracy_level`` is the activation precision of those matmuls: 0 = unset (fp32), 1 = fp32,
  2 = fp16, 3 = bf16, 4 = int8 (activations quantized per block: the fast CPU path).

It runs as a subprocess: the builder prints a progress bar per tensor and imports torch and
transformers, none of which the caller needs to hold in memory afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError, BackendUnavailable

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")
WEIGHT_ONLY = ("int8", "int4")
"""Precisions the builder quantizes block-wise; ``block_size`` and ``accuracy_level`` apply only to these."""
BLOCK_SIZES = (16, 32, 64, 128, 256)
TARGETS = ("cpu", "cuda", "dml", "webgpu")
ROPE_CACHES = ("cos_cache", "sin_cache")
"""Rotary-embedding tables the builder stores as initializers; not model weights."""


def available() -> str | None:
    """``None`` when the builder can run here, else what to install."""
    missing = [name for name in ("onnxruntime_genai", "onnxruntime", "onnx", "onnx_ir", "transformers", "torch")
               if importlib.util.find_spec(name) is None]
    if missing:
        return f"HF → ONNX conversion needs {', '.join(missing)}: pip install 'slm-autotune-onnxruntime[convert]'"
    return None


def builder_command(hf_dir: Path, out_dir: Path, precision: str, *, block_size: int | None, accuracy_level: int | None,
                    target: str, cache_dir: Path) -> list[str]:
    """The model-builder command line for these settings."""
    options = ["hf_token=false"]  # a local folder: never ask the Hub for credentials
    if precision in WEIGHT_ONLY:
        if block_size is not None:
            options.append(f"block_size={block_size}")
        if accuracy_level is not None:
            options.append(f"accuracy_level={accuracy_level}")
    return [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out_dir),
            "-p", precision, "-e", target, "-c", str(cache_dir), "--extra_options", *options]


def hf_to_onnx(hf_dir: Path, out_dir: Path, precision: str = "fp32", *, block_size: int | None = 32,
               accuracy_level: int | None = None, target: str = "cpu") -> Path:
    """Build an onnxruntime-genai model folder from the HF folder ``hf_dir`` into ``out_dir``; return ``out_dir``.

    ``block_size`` and ``accuracy_level`` apply to ``int4``/``int8`` only (``None``: the builder's
    defaults, 32 and 4 on CPU). ``target`` is the execution provider the graph is shaped for
    (``cpu`` unless the model will run on a GPU). The folder holds ``model.onnx``,
    ``model.onnx.data``, ``genai_config.json`` and the tokenizer files.
    """
    reason = available()
    if reason:
        raise BackendUnavailable(reason)
    if precision not in PRECISIONS:
        raise AutotuneError(f"unknown ONNX precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if block_size is not None and block_size not in BLOCK_SIZES:
        raise AutotuneError(f"block_size must be one of {BLOCK_SIZES}, not {block_size}")
    if accuracy_level is not None and accuracy_level not in range(5):
        raise AutotuneError(f"accuracy_level must be 0..4, not {accuracy_level}")
    if target not in TARGETS:
        raise AutotuneError(f"unknown builder target {target!r}; use one of {', '.join(TARGETS)}")
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise AutotuneError(f"{hf_dir} is not a Hugging Face folder (no config.json)")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="ort-builder-") as cache:
        command = builder_command(hf_dir, out_dir, precision, block_size=block_size, accuracy_level=accuracy_level,
                                  target=target, cache_dir=Path(cache))
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0 or not (out_dir / "model.onnx").is_file() or not (out_dir / "genai_config.json").is_file():
        lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.strip()]
        last = lines[-1][-300:] if lines else "no output"
        # The builder fails on the architecture, not on one precision: the backend is out for this model.
        raise BackendUnavailable(
            f"the onnxruntime-genai model builder failed on {hf_dir} ({precision}, exit {done.returncode}): {last}; "
            "this model cannot use the onnxruntime backend with the installed onnxruntime-genai and transformers"
        )
    return out_dir


def _tensor_bytes(initializer: Any) -> int:
    """Stored size of one initializer, whether inline or in the external data file."""
    from onnx import TensorProto, helper

    if initializer.data_location == TensorProto.EXTERNAL:
        entries = {entry.key: entry.value for entry in initializer.external_data}
        return int(entries.get("length", 0))
    if initializer.raw_data:
        return len(initializer.raw_data)
    count = 1
    for dim in initializer.dims:
        count *= dim
    return count * helper.tensor_dtype_to_np_dtype(initializer.data_type).itemsize


def weight_summary(model_dir: Path) -> dict[str, Any]:
    """What the builder really wrote: weight bytes, quantized op counts and their attributes.

    Reads only the graph (``model.onnx``), not the external weights, so it is fast on any size.
    """
    import onnx

    model = onnx.load(str(Path(model_dir) / "model.onnx"), load_external_data=False)
    weight_bytes = rope_bytes = 0
    for initializer in model.graph.initializer:
        size = _tensor_bytes(initializer)
        if initializer.name in ROPE_CACHES:
            rope_bytes += size
        else:
            weight_bytes += size
    op_counts: dict[str, int] = {}
    quantization: set[tuple[str, int, int, int | None]] = set()
    for node in model.graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            attrs = {a.name: a.i for a in node.attribute}
            # accuracy_level only means something for matmuls (a gather does no arithmetic)
            level = attrs.get("accuracy_level", 0) if node.op_type == "MatMulNBits" else None
            quantization.add((node.op_type, attrs.get("bits", 4), attrs.get("block_size", 0), level))
    return {
        "weight_bytes": weight_bytes,
        "rope_cache_bytes": rope_bytes,
        "quantized_ops": {op: op_counts[op] for op in ("MatMulNBits", "GatherBlockQuantized") if op in op_counts},
        "float_matmuls": op_counts.get("MatMul", 0),
        "quantization": [dict(zip(("op", "bits", "block_size", "accuracy_level"), q, strict=True))
                         for q in sorted(quantization, key=str)],
    }


def genai_decoder_config(model_dir: Path) -> dict[str, Any]:
    """The ``model.decoder`` section of ``genai_config.json`` (file name, heads, layers, I/O names)."""
    config = json.loads((Path(model_dir) / "genai_config.json").read_text())
    return {**config["model"]["decoder"], "vocab_size": config["model"]["vocab_size"],
            "context_length": config["model"].get("context_length")}
