"""Reading a Hugging Face checkpoint folder (config.json + *.safetensors) without loading its weights.

A source format the core knows, like GGUF: backends that take an HF folder (ONNX Runtime,
OpenVINO, MLX) need the same facts to predict
memory: layer count, KV heads, head size, vocabulary, parameter count. They come from
``config.json`` and from the safetensors headers (a JSON block at the start of each file), so
inspecting a 1 GB checkpoint reads a few kilobytes.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from autotune.errors import ModelSourceError
from autotune.files import UnreadableFile, read_json, read_prefix
from autotune.model.source import ModelSource, cached_content_hash

CONVERSION_RECORD = "autotune_conversion.json"
MAX_SAFETENSORS_HEADER = 100 * 2**20
"""The largest header the safetensors format allows."""
"""Written by ``gguf_to_hf`` next to the checkpoint: where the weights came from (e.g. a Q4_1 GGUF)."""

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}
_PRECISION = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one ``.safetensors`` file: tensor name → dtype, shape, offsets.

    Read bounded: the file must be a regular file (a FIFO would hang the read) and the header length it states at
    most ``MAX_SAFETENSORS_HEADER`` (a damaged length would read the whole multi-GB file as JSON).
    """
    try:
        raw, _ = read_prefix(path, 8, "safetensors file")
    except UnreadableFile as error:
        raise ModelSourceError(str(error)) from None
    if len(raw) != 8:
        raise ModelSourceError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", raw)
    if length > MAX_SAFETENSORS_HEADER:
        raise ModelSourceError(f"{path} is not a safetensors file (it states a {length}-byte header; at most "
                               f"{MAX_SAFETENSORS_HEADER // 2**20} MiB are allowed)")
    try:
        header: dict[str, Any] = json.loads(read_prefix(path, 8 + length, "safetensors file")[0][8:])
    except (UnreadableFile, ValueError) as error:
        raise ModelSourceError(f"{path} has no readable safetensors header ({error})") from None
    header.pop("__metadata__", None)
    return header


def tensor_stats(folder: Path) -> tuple[int, dict[str, int]]:
    """Total parameter count and element count per safetensors dtype across the folder's files."""
    parameters = 0
    by_dtype: Counter[str] = Counter()
    for file in sorted(folder.glob("*.safetensors")):
        for info in safetensors_header(file).values():
            count = 1
            for dim in info["shape"]:
                count *= dim
            parameters += count
            by_dtype[info["dtype"]] += count
    return parameters, dict(by_dtype)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a config (multimodal checkpoints nest it under ``text_config``)."""
    return {**config, **config["text_config"]} if isinstance(config.get("text_config"), dict) else config


def model_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The dimensions memory predictions need, with the defaults transformers applies when a key is absent."""
    config = text_config(config)
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    return {
        "hidden_size": hidden,
        "num_hidden_layers": int(config["num_hidden_layers"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(config.get("num_key_value_heads") or heads),
        "head_dim": int(config.get("head_dim") or hidden // heads),
        "intermediate_size": int(config.get("intermediate_size") or 4 * hidden),
        "vocab_size": int(config["vocab_size"]),
        "max_position_embeddings": int(config.get("max_position_embeddings") or 0),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
    }


def inspect_hf_folder(path: Path) -> ModelSource:
    """Describe an HF checkpoint folder as a ``ModelSource`` (format ``hf``).

    ``metadata`` holds ``config`` (the model dimensions, see ``model_shape``), ``model_type``,
    ``architectures``, ``dtypes`` (element counts per safetensors dtype) and, for a folder written
    by ``gguf_to_hf``, ``converted_from`` (the GGUF's file type, e.g. ``MOSTLY_Q4_1``).
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file() or not any(path.glob("*.safetensors")):
        raise ModelSourceError(f"{path} is not a Hugging Face folder (expected config.json and *.safetensors files)")
    try:
        config = read_json(config_file, "model config")
    except UnreadableFile as error:
        raise ModelSourceError(str(error)) from None
    try:
        shape = model_shape(config)
    except KeyError as missing:
        raise ModelSourceError(f"{config_file} lacks {missing}; is this a decoder language model checkpoint?") from None
    parameters, dtypes = tensor_stats(path)
    main_dtype = max(dtypes, key=lambda name: dtypes[name]) if dtypes else "F32"
    metadata: dict[str, object] = {
        "config": shape,
        "model_type": text_config(config).get("model_type", config.get("model_type")),
        "architectures": config.get("architectures") or [],
        "dtypes": dtypes,
        "bytes": sum(count * _DTYPE_BYTES.get(name, 4) for name, count in dtypes.items()),
    }
    record = path / CONVERSION_RECORD
    precision = _PRECISION.get(main_dtype, main_dtype.lower())
    if record.is_file():
        converted = json.loads(record.read_text())
        metadata["converted_from"] = converted
        # The weights were dequantized from this type: storing them wider adds no precision.
        precision = converted.get("file_type") or precision
    return ModelSource(
        path=path,
        format="hf",
        sha256=cached_content_hash(path),
        architecture=str(metadata["model_type"]) if metadata["model_type"] else None,
        parameters=parameters,
        precision=precision,
        metadata=metadata,
    )
