"""Predicting the builder's artifact size and the worker's peak memory before anything is built.

Weights follow what the model builder writes, checked byte for byte against its output for the
tiny test model and SmolLM2-135M (fp32, int8, int4 with several block sizes):

- float precisions store every parameter once (a tied embedding is shared with the LM head);
- ``int4``/``int8`` store each matmul weight as ``bits/8`` bytes plus one fp32 scale per block
  (symmetric: no zero points); norms stay fp32. A tied embedding is shared with the quantized LM
  head only for int4 (``GatherBlockQuantized`` has no 8-bit form): with int8 the embedding stays
  fp32 next to an int8 LM head. An untied embedding always stays fp32;
- plus the rotary cos/sin tables: ``max_position_embeddings × head_dim`` floats.

Resident memory is not the stored size: ONNX Runtime memory-maps the external weights and
prepacks matmul weights into its kernels' layouts (a second copy), while an embedding used only
by a Gather is barely touched. ``RESIDENCY`` holds resident bytes per stored byte for each kind
of weight, calibrated on SmolLM2-135M in the worker (peak VmHWM; prompt 128, context 2048 for
the first three rows, prompt 256, context 4096 for the last two):

=====================  ==========  ========  =========  =================
precision              stored MiB  measured  predicted  residency
=====================  ==========  ========  =========  =================
fp32                   515         868 MiB   866 MiB    float matmul 1.29
int8, block 32, acc 4  254         463 MiB   473 MiB    int8/acc 4: 1.79
int4, block 32, acc 4  82          380 MiB   376 MiB    int4: 2.14
int4, block 128, acc 0 70          461 MiB   464 MiB    (out of sample)
int8, block 64, acc 0  246         653-714   706 MiB    int8/acc 0: 2.77
=====================  ==========  ========  =========  =================

Two runs of one configuration differed by 9% (the share of the memory-mapped originals that
stays resident varies), so the factors lean to the higher observation: a prediction only skips
configurations that cannot fit, and over-predicting by a little skips nothing that fits well.

Peak = resident weights + KV cache (preallocated by onnxruntime-genai for the whole context:
layers × context × kv_heads × head_dim × 2 (K and V) × 4 bytes) + prefill logits (prompt ×
vocabulary floats) + ``RUNTIME_OVERHEAD``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import autotune
from autotune import Hardware, Prediction

from .convert import WEIGHT_ONLY

FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
BITS = {"int8": 8, "int4": 4}
SCALE_BYTES = 4
"""Block scales are stored in the graph's I/O type: fp32 for models built for the CPU."""

RESIDENCY = {"float": 1.29, "gather": 0.1, "norms": 1.0}
"""Resident bytes per stored byte: float matmuls (prepacked), an embedding only a Gather reads
(a few rows touched), norms."""

QUANTIZED_RESIDENCY = {("int4", 0): 2.14, ("int4", 4): 2.14, ("int8", 0): 2.77, ("int8", 4): 1.79}
"""Resident bytes per stored byte of quantized matmuls by (precision, accuracy_level): the packed
copy plus the mapped original; int8 with fp32 activations (level 0) keeps a wider unpacked form."""

RUNTIME_OVERHEAD = 88 * 2**20
"""Interpreter, numpy, pydantic, ONNX Runtime + onnxruntime-genai, tokenizer, thread pools and
arenas: the worker's peak on the tiny test model, whose weights and cache are negligible."""


def weight_layout(shape: Mapping[str, Any], parameters: int, precision: str, block_size: int | None) -> dict[str, int]:
    """Stored weight bytes by kind (``int4``/``int8``, ``float``, ``gather``, ``norms``), excluding rotary tables."""
    hidden, vocab = shape["hidden_size"], shape["vocab_size"]
    embedding = vocab * hidden
    norms = (2 * shape["num_hidden_layers"] + 1) * hidden
    tied = shape["tie_word_embeddings"]
    # parameters counts a tied embedding once; untied, it includes the LM head (a matmul).
    matmuls = parameters - embedding - norms + (embedding if tied else 0)
    if precision in FLOAT_BYTES:
        size = FLOAT_BYTES[precision]
        gather = 0 if tied else embedding * size  # tied: the embedding is the LM head's matrix
        return {"float": matmuls * size, "gather": gather, "norms": norms * size}
    if precision not in WEIGHT_ONLY:
        raise ValueError(f"unknown precision {precision!r}")
    per_weight = BITS[precision] / 8 + SCALE_BYTES / (block_size or 32)
    shared = tied and precision == "int4"
    return {precision: int(matmuls * per_weight), "gather": 0 if shared else embedding * 4, "norms": norms * 4}


def weight_bytes(shape: Mapping[str, Any], parameters: int, precision: str, block_size: int | None) -> int:
    """Bytes of weights the builder writes for this precision (excluding the rotary tables)."""
    return sum(weight_layout(shape, parameters, precision, block_size).values())


def rope_bytes(shape: Mapping[str, Any]) -> int:
    """The rotary cos/sin tables the builder stores (fp32)."""
    return shape["max_position_embeddings"] * shape["head_dim"] * 4


def kv_cache_bytes(shape: Mapping[str, Any], context: int, element_bytes: int = 4) -> int:
    """K and V for every layer over the whole context, as onnxruntime-genai preallocates them."""
    return autotune.kv_cache_bytes(layers=shape["num_hidden_layers"], kv_heads=shape["num_key_value_heads"],
                                   head_dim=shape["head_dim"], context=context, bytes_per_element=element_bytes)


def predict_memory(shape: Mapping[str, Any], parameters: int, params: Mapping[str, Any], prompt_tokens: int,
                   context: int, hardware: Hardware | None = None) -> Prediction:
    """Peak resident memory of a measurement (and, on the CPU, a decode latency lower bound).

    The ``breakdown`` parts add up to the total; ``weights_resident`` is what the stored weights
    (``weight_bytes`` + ``rope_bytes``) occupy once loaded.
    """
    precision = params["precision"]
    block = params.get("block_size") if precision in WEIGHT_ONLY else None
    layout = weight_layout(shape, parameters, precision, block)
    quantized_factor = max(QUANTIZED_RESIDENCY.values())  # levels 1-3: not measured, assume the worst
    if precision in WEIGHT_ONLY:
        quantized_factor = QUANTIZED_RESIDENCY.get((precision, params.get("accuracy_level")), quantized_factor)
    factors = {**RESIDENCY, "int4": quantized_factor, "int8": quantized_factor}
    resident = int(sum(size * factors[kind] for kind, size in layout.items())) + rope_bytes(shape)
    element = 2 if precision in ("fp16", "bf16") else 4
    breakdown = {
        "weights_resident": resident,
        "kv_cache": kv_cache_bytes(shape, context + 1, element),
        "prefill_logits": prompt_tokens * shape["vocab_size"] * 4,
        "runtime": RUNTIME_OVERHEAD,
    }
    total = sum(breakdown.values())
    latency = None
    if hardware is not None and params.get("execution_provider", "cpu") == "cpu":
        # Every decode step reads every weight it uses at least once: bandwidth bounds the step from below.
        # An embedding only a Gather reads and the rotary tables are looked up a row at a time.
        latency = autotune.decode_latency_lower_bound_ms(sum(layout.values()) - layout["gather"], hardware)
    return Prediction(memory_bytes=total, latency_lower_bound_ms=latency, breakdown=breakdown)
