"""HF folder → MLX folder with ``mlx_lm.convert``, and what was really written.

The written folder is described from its own files (config.json's ``quantization`` block and the
safetensors headers), not from the request: mlx-lm silently leaves a layer unquantized when its
input dimension does not divide the group size, so the effective bits per weight are counted.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from autotune import Artifact, ModelSource, safetensors_header
from autotune.errors import AutotuneError

from .quantization import QuantSpec
from .runtime import import_mlx_lm

ARTIFACT_FOLDER = "model"
MLX_FORMAT = "mlx"


def kv_group_size(head_dim: int) -> int | None:
    """Group size for a quantized KV cache: the largest of 64/32 that divides the head size (None: none does).

    mlx-lm quantizes keys and values along the head dimension; its default (64) fails on models
    whose heads are 32 wide.
    """
    for size in (64, 32):
        if head_dim % size == 0:
            return size
    return None


def convert(source: ModelSource, spec: QuantSpec, workdir: Path) -> Artifact:
    """Convert ``source`` (an HF folder) into ``workdir/model`` as ``spec`` says, and describe the result."""
    mlx_lm = import_mlx_lm()
    out = workdir / ARTIFACT_FOLDER
    started = time.perf_counter()
    # mlx-lm prints progress lines; keep the tuner's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            mlx_lm.convert(str(source.path), mlx_path=str(out), **spec.convert_kwargs())
        except ValueError as error:
            raise AutotuneError(
                f"mlx-lm cannot convert {source.path} to {spec.label}: {error}; try another bits/group_size"
            ) from None
    hoist_rope_parameters(out / "config.json")
    convert_s = time.perf_counter() - started
    return describe(out, source, spec, convert_s)


def hoist_rope_parameters(config_file: Path) -> bool:
    """Copy transformers 5's ``rope_parameters`` to the top-level keys mlx-lm reads; True when changed.

    transformers 5 writes ``rope_parameters: {rope_theta, rope_type, ...}`` where 4.x wrote
    ``rope_theta`` and ``rope_scaling``; mlx-lm 0.32 reads only the old keys and silently falls
    back to a RoPE base of 10000 (SmolLM2 needs 100000: its next-token distributions then drift
    far from llama.cpp's on the same weights).
    """
    config = json.loads(config_file.read_text())
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return False
    changed = False
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
        changed = True
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if not config.get("rope_scaling") and scaling.get("rope_type", "default") != "default":
        config["rope_scaling"] = scaling
        changed = True
    if changed:
        config_file.write_text(json.dumps(config, indent=4))
    return changed


def describe(folder: Path, source: ModelSource, spec: QuantSpec, convert_s: float | None = None) -> Artifact:
    """An ``Artifact`` for an MLX folder, with the bits per weight counted from its tensors."""
    tensors: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(safetensors_header(file))
    size = sum(info["data_offsets"][1] - info["data_offsets"][0] for info in tensors.values())
    quantized = sorted(name.removesuffix(".scales") for name in tensors if name.endswith(".scales"))
    left_float = sorted(
        name.removesuffix(".weight") for name, info in tensors.items()
        if spec.quantized and name.endswith(".weight") and len(info["shape"]) == 2 and info["dtype"] != "U32"
    )
    config = json.loads((folder / "config.json").read_text())
    quantization = config.get("quantization") or {}
    overrides = {path: value["bits"] for path, value in quantization.items() if isinstance(value, dict)}
    shape = source.metadata.get("config", {})
    head_dim = int(shape.get("head_dim") or 0) if isinstance(shape, dict) else 0
    parameters = source.parameters or 0
    details: dict[str, Any] = {
        "dtype": spec.dtype,
        "quantization": {k: v for k, v in quantization.items() if not isinstance(v, dict)},
        "quantized_layers": len(quantized),
        "unquantized_matrices": left_float[:20],
        "layers_by_bits": {str(bits): count for bits, count in sorted(Counter(overrides.values()).items())},
        "kv_group_size": kv_group_size(head_dim) if head_dim else None,
    }
    if convert_s is not None:
        details["convert_s"] = round(convert_s, 3)
    return Artifact(
        path=folder,
        format=MLX_FORMAT,
        precision=spec.label,
        # Everything written (scales and biases included) over the source's logical parameter count.
        bits_per_weight=round(size * 8 / parameters, 4) if parameters else float(spec.bits),
        size_bytes=sum(p.stat().st_size for p in folder.glob("*.safetensors")),
        details=details,
    )
