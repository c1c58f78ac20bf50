"""Predicting an MLX configuration's peak memory before it is built or run.

peak ≈ weights (per tensor, as mlx-lm will quantize it) + KV cache (grown in 256-token steps,
quantized when ``kv_bits`` < 16) + prefill activations + the runtime (Python, MLX, mlx-lm with
transformers and the model's tokenizer).

The runtime term was calibrated on worker peaks (the worker's own ``VmHWM``) on Linux x86 with
``mlx[cpu]`` 0.32.4 and mlx-lm 0.32.2: worker peak minus MLX's own peak was 351 MiB for the tiny
test model (vocabulary 384) and 411-412 MiB for SmolLM2-135M (vocabulary 49152) at 4, 8 and 32
bits. With that, SmolLM2-135M predictions were within 2% (513/577/946 MiB predicted, 505/568/936
measured for 4-bit, 8-bit and float32).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import autotune
from autotune import safetensors_header

from .quantization import DTYPE_BYTES, QuantSpec

RUNTIME_BYTES = 350 * 2**20
"""Resident memory of a worker with Python, MLX and mlx-lm (transformers) loaded (measured: see module docs)."""

TOKENIZER_BYTES_PER_TOKEN = 1300
"""What the loaded tokenizer adds per vocabulary entry (the two calibration points differ by this)."""


def runtime_bytes(vocab_size: int) -> int:
    """The runtime's resident memory beyond MLX's arrays, for a model with this vocabulary."""
    return RUNTIME_BYTES + TOKENIZER_BYTES_PER_TOKEN * vocab_size

KV_STEP = 256
"""mlx-lm's ``KVCache`` grows its buffers in steps of this many tokens."""


def source_tensors(folder: Path) -> dict[str, list[int]]:
    """Tensor name → shape across an HF folder's safetensors files (headers only)."""
    shapes: dict[str, list[int]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        shapes.update({name: list(info["shape"]) for name, info in safetensors_header(file).items()})
    return shapes


def weight_bytes(tensors: dict[str, list[int]], spec: QuantSpec, num_layers: int) -> int:
    """Bytes of the converted weights."""
    return int(sum(spec.tensor_bytes(name, shape, num_layers) for name, shape in tensors.items()))


def kv_bytes(shape: dict[str, Any], tokens: int, dtype: str, kv_bits: int, kv_group: int | None) -> int:
    """KV cache bytes for ``tokens`` positions (keys and values, every layer)."""
    element: float = DTYPE_BYTES[dtype]
    if kv_bits < 16 and kv_group is not None:
        element = kv_bits / 8 + 2 * element / kv_group  # packed values plus a scale and a bias per group
    return autotune.kv_cache_bytes(layers=shape["num_hidden_layers"], kv_heads=shape["num_key_value_heads"],
                                   head_dim=shape["head_dim"], context=math.ceil(tokens / KV_STEP) * KV_STEP,
                                   bytes_per_element=element)


def lookup_bytes(tensors: dict[str, list[int]], spec: QuantSpec, num_layers: int) -> int:
    """Bytes of the token embedding, of which a decode step reads only the rows it looks up."""
    return weight_bytes({name: shape for name, shape in tensors.items() if "embed_tokens" in name}, spec, num_layers)


def activation_bytes(shape: dict[str, Any], chunk: int, context: int, dtype: str) -> int:
    """Peak temporaries of one prefill chunk: attention scores and probabilities, MLP, hidden states."""
    per_token = (shape["num_attention_heads"] * context * 2 + shape["intermediate_size"] * 3
                 + shape["hidden_size"] * 4)
    return chunk * per_token * DTYPE_BYTES[dtype] + shape["vocab_size"] * 4
