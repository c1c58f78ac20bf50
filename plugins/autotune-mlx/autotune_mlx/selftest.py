"""The MLX self-test: a float and a 4-bit quantized matmul on MLX's default device, checked against numpy.

``quantized_matmul`` on purpose: models the tuner converts run their weights through it (4-bit,
group 64 is mlx-lm's default), on the Metal GPU or, with the ``mlx[cpu]`` build, on the CPU.
"""

from __future__ import annotations

import numpy as np

from .runtime import import_mlx

ROWS, K, N = 8, 128, 64
BITS, GROUP_SIZE = 4, 64
TOLERANCE = 1e-4
"""Largest error relative to the output's largest magnitude: float32 throughout, on either device."""
ROUNDING_TOLERANCE = 0.25
"""Largest difference between the 4-bit weights and the originals, relative to the largest weight:
about 0.05 for normal weights in groups of 64 (half a step of 1/15 of a group's range)."""


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference over the reference's largest magnitude; raise when ``value`` is malformed."""
    if value.shape != reference.shape or not np.isfinite(value).all():
        raise RuntimeError(f"MLX output is malformed: shape {value.shape}, expected {reference.shape}, "
                           f"{int((~np.isfinite(value)).sum())} non-finite values")
    return float(np.abs(value - reference).max()) / float(np.abs(reference).max())


def run_matmuls() -> str:
    """Multiply small random arrays (float, then 4-bit quantized weights) with MLX; raise when a result is wrong."""
    mx = import_mlx()
    device = mx.default_device()
    device_name = "the Metal GPU" if device.type == mx.DeviceType.gpu else "the CPU"
    key = mx.random.key(0)
    x_key, w_key = mx.random.split(key)
    x = mx.random.normal((ROWS, K), key=x_key)
    weight = mx.random.normal((N, K), key=w_key)
    float_out = mx.matmul(x, weight.T)
    # Quantized weights as mlx-lm stores them: [N, K] packed, with a scale and bias per group of K.
    packed, scales, biases = mx.quantize(weight, group_size=GROUP_SIZE, bits=BITS)
    dequantized = mx.dequantize(packed, scales, biases, group_size=GROUP_SIZE, bits=BITS)
    quantized_out = mx.quantized_matmul(x, packed, scales, biases, transpose=True, group_size=GROUP_SIZE, bits=BITS)
    mx.eval(float_out, dequantized, quantized_out)
    x_np, weight_np, dequantized_np = np.array(x), np.array(weight), np.array(dequantized)
    float_error = relative_error(np.array(float_out), x_np @ weight_np.T)
    quantized_error = relative_error(np.array(quantized_out), x_np @ dequantized_np.T)
    # The dequantized weights must be a 4-bit rounding of the originals, not zeros or garbage that
    # quantized_matmul would then agree with.
    rounding_error = relative_error(dequantized_np, weight_np)
    if float_error > TOLERANCE or quantized_error > TOLERANCE:
        raise RuntimeError(f"MLX matmul on {device_name} is wrong: relative error {float_error:.2g} (float), "
                           f"{quantized_error:.2g} (4-bit) > {TOLERANCE:g}")
    if rounding_error > ROUNDING_TOLERANCE:
        raise RuntimeError(f"MLX's 4-bit quantization on {device_name} is wrong: "
                           f"weights differ by {rounding_error:.2g}")
    return (f"ran a float and a {BITS}-bit (group {GROUP_SIZE}) quantized matmul on {device_name} ({device}, "
            f"MLX's default device), "
            f"max relative error {float_error:.1e} (float), {quantized_error:.1e} (4-bit)")
