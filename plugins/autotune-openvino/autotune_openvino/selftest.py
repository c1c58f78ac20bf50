"""The OpenVINO self-test: a tiny model built with the opset API, compiled for the CPU and run.

Three matmuls of one input: with float weights, and with 8-bit (per output channel) and 4-bit
(groups of 32) weights behind the decompression subgraph NNCF writes (``u8``/``u4`` constant →
Convert → Subtract zero point → Multiply scale), which the CPU plugin fuses into its
weight-compressed fully-connected kernels, the ones compressed LLMs run on. It compiles at the CPU
plugin's default inference precision (bf16 on CPUs with AMX or AVX512-BF16), since that is what
tuned models run with, and checks against numpy with a tolerance for that precision. Each matmul is
run for 8 rows (a prompt) and for 1 row (a decode step): the plugin picks different kernels for the two.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

K, N = 64, 64
PROMPT_ROWS = 8
COMPRESSED = {"u8": (8, K), "u4": (4, 32)}
"""Weight-compressed outputs: name → (bits, group size along K); int8_asym and int4_asym_g32 in NNCF's terms."""
TOLERANCE = {"f32": 1e-4, "bf16": 3e-2, "f16": 1e-2}
"""Largest error relative to the output's largest magnitude, by the compiled inference precision:
bf16 keeps 8 mantissa bits (about 0.4% per rounded value)."""
COMPRESSED_TOLERANCE = 3e-2
"""The bound for weight-compressed outputs at any precision: the CPU plugin quantizes their
activations to int8 per group (``DYNAMIC_QUANTIZATION_GROUP_SIZE``, 32), which costs about 1% here
even at f32."""


def usable_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def quantize_asymmetric(weight: np.ndarray, bits: int, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``weight`` [N, K] in groups of ``group`` along K: ``(levels, zero points, scales)``.

    Shaped [N, K/group, group] for the levels and [N, K/group, 1] for the rest, as NNCF stores them.
    """
    top = 2**bits - 1
    groups = weight.reshape(weight.shape[0], -1, group)
    low, high = groups.min(axis=2, keepdims=True), groups.max(axis=2, keepdims=True)
    scales = ((high - low) / top).astype(np.float32)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)  # a constant group: any scale is exact
    zero_points = np.clip(np.round(-low / scales), 0, top).astype(np.uint8)
    levels = np.clip(np.round(groups / scales) + zero_points, 0, top).astype(np.uint8)
    return levels, zero_points, scales


def build_model(weight: np.ndarray) -> tuple[Any, dict[str, np.ndarray]]:
    """The test model (input ``x`` [rows, K]; outputs ``float``, ``u8``, ``u4``) and each output's weights, dequantized.

    The dequantized weights are the numpy reference's, so the check measures the runtime's kernels,
    not the rounding to 8 or 4 bits.
    """
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter(ov.PartialShape([-1, K]), ov.Type.f32, name="x")
    # transpose_b: weights stored [N, K], the layout the CPU plugin's fully-connected node expects.
    outputs = {"float": ops.matmul(x, ops.constant(weight), transpose_a=False, transpose_b=True)}
    weights = {"float": weight}
    for name, (bits, group) in COMPRESSED.items():
        element = ov.Type.u8 if bits == 8 else ov.Type.u4
        levels, zero_points, scales = quantize_asymmetric(weight, bits, group)
        decompressed = ops.multiply(
            ops.subtract(ops.convert(ops.constant(levels, dtype=element), ov.Type.f32),
                         ops.convert(ops.constant(zero_points, dtype=element), ov.Type.f32)),
            ops.constant(scales))
        flat = ops.reshape(decompressed, ops.constant(np.array([N, K], dtype=np.int64)), special_zero=False)
        outputs[name] = ops.matmul(x, flat, transpose_a=False, transpose_b=True)
        weights[name] = ((levels.astype(np.float32) - zero_points.astype(np.float32)) * scales).reshape(N, K)
    for name, node in outputs.items():
        node.output(0).get_tensor().set_names({name})
    return ov.Model(list(outputs.values()), [x], "autotune-selftest"), weights


def run_tiny_model() -> str:
    """Compile the model for the CPU with every usable core, run it, and compare with numpy; raise when wrong."""
    import openvino as ov

    rng = np.random.default_rng(0)
    model, weights = build_model(rng.standard_normal((N, K)).astype(np.float32))
    threads = usable_cores()
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    float_tolerance = TOLERANCE.get(precision, TOLERANCE["bf16"])
    request = compiled.create_infer_request()
    worst = dict.fromkeys(weights, 0.0)
    for rows in (PROMPT_ROWS, 1):
        x = rng.standard_normal((rows, K)).astype(np.float32)
        request.infer({"x": x})
        for name, weight in weights.items():
            reference = x @ weight.T
            tolerance = float_tolerance if name == "float" else max(float_tolerance, COMPRESSED_TOLERANCE)
            value = np.asarray(request.get_tensor(name).data)
            if value.shape != reference.shape or not np.isfinite(value).all():
                raise RuntimeError(f"OpenVINO's {name} matmul output is malformed for {rows} rows: shape {value.shape}")
            error = float(np.abs(value - reference).max()) / float(np.abs(reference).max())
            if error > tolerance:
                raise RuntimeError(f"OpenVINO's {name} matmul is wrong for {rows} rows at {precision}: relative error "
                                   f"{error:.2g} > {tolerance:g}")
            worst[name] = max(worst[name], error)
    errors = ", ".join(f"{error:.1e} ({name})" for name, error in worst.items())
    return (f"ran float, 8-bit and 4-bit-weight matmuls on CPU (OpenVINO {ov.get_version().split('-')[0]}, "
            f"{precision} inference precision, {threads} threads, {PROMPT_ROWS} rows and 1), "
            f"max relative error {errors}")
