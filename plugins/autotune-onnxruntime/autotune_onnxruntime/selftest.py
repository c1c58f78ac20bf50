"""The ONNX Runtime self-test: a tiny 4-bit ``MatMulNBits`` graph, built in memory, run on the CPU.

``MatMulNBits`` on purpose: the int4 models the tuner builds spend their time in MLAS's blockwise
quantized kernels (per-ISA code picked at run time: AVX2, AVX-512, VNNI), with fp32 activations
(``accuracy_level`` 0) or int8 activations (4, the model builder's CPU default). Those kernels are
where a runtime built for other CPU features faults, not in a plain float matmul, so the graph has
both accuracy levels, plus a float ``MatMul`` as a baseline.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

ROWS, K, N = 8, 64, 64
BLOCK_SIZE = 32
BITS = 4
ZERO_POINT = 2 ** (BITS - 1)
"""``MatMulNBits``'s zero point when the graph gives none (8 for 4 bits): the weights are symmetric."""
ACCURACY_LEVELS = (0, 4)
TOLERANCE = {0: 1e-4, 4: 3e-2}
"""Largest error relative to the output's largest magnitude: fp32 activations must agree to rounding;
int8 activations (quantized per block) cost under 1% here."""


def usable_cores() -> int:
    """The cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def quantize_blockwise(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``weight`` [K, N] as ``MatMulNBits`` stores it: packed 4-bit blocks, per-block scales, and its dequantized value.

    Per output column, each run of ``BLOCK_SIZE`` rows shares one scale; values are rounded to
    0..15 around the implicit zero point 8. Two values fill a byte, the even one in the low nibble.
    Returns ``(packed [N, K/BLOCK_SIZE, BLOCK_SIZE/2] uint8, scales [N * K/BLOCK_SIZE] float32,
    dequantized [K, N] float32)``; the dequantized weights are the numpy reference's.
    """
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // BLOCK_SIZE, BLOCK_SIZE)
    scales = np.abs(blocks).max(axis=2, keepdims=True) / (ZERO_POINT - 1)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    levels = np.clip(np.round(blocks / scales) + ZERO_POINT, 0, 2**BITS - 1).astype(np.uint8)
    packed = (levels[..., 0::2] | (levels[..., 1::2] << 4)).astype(np.uint8)
    dequantized = ((levels.astype(np.float32) - ZERO_POINT) * scales).reshape(n, k).T
    return packed, scales.reshape(-1), np.ascontiguousarray(dequantized, dtype=np.float32)


def build_graph(weight: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The serialized test model and the dequantized weights it computes with.

    Outputs: ``q4_acc0`` and ``q4_acc4`` (``MatMulNBits`` at both accuracy levels) and ``float``
    (``MatMul`` with the dequantized weights), all ``x @ dequantized``.
    """
    from onnx import TensorProto, helper, numpy_helper

    packed, scales, dequantized = quantize_blockwise(weight)
    initializers = [numpy_helper.from_array(packed, "w_q4"), numpy_helper.from_array(scales, "w_scales"),
                    numpy_helper.from_array(dequantized, "w_float")]
    nodes = [helper.make_node("MatMulNBits", ["x", "w_q4", "w_scales"], [f"q4_acc{level}"], domain="com.microsoft",
                              K=K, N=N, bits=BITS, block_size=BLOCK_SIZE, accuracy_level=level)
             for level in ACCURACY_LEVELS]
    nodes.append(helper.make_node("MatMul", ["x", "w_float"], ["float"]))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, ROWS, N])
               for name in [*(f"q4_acc{level}" for level in ACCURACY_LEVELS), "float"]]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ROWS, K])]
    graph = helper.make_graph(nodes, "autotune-selftest", inputs, outputs, initializer=initializers)
    # Opset 17 and IR 8: old enough for any onnxruntime the plugin accepts (>= 1.20).
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return model.SerializeToString(), dequantized


def run_quantized_graph() -> str:
    """Run the 4-bit graph on the CPU with every usable core; raise when an output is wrong."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.standard_normal((1, ROWS, K)).astype(np.float32)
    model, dequantized = build_graph(weight)
    threads = usable_cores()
    options: Any = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: the self-test's output is its summary
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    results = dict(zip(names, session.run(names, {"x": x}), strict=True))
    reference = x @ dequantized
    scale = float(np.abs(reference).max())
    errors: dict[str, float] = {}
    for name, value in results.items():
        if value.shape != reference.shape or not np.isfinite(value).all():
            raise RuntimeError(f"onnxruntime's {name} output is malformed: shape {value.shape}, "
                               f"{int((~np.isfinite(value)).sum())} non-finite values")
        errors[name] = float(np.abs(value - reference).max()) / scale
    for level in ACCURACY_LEVELS:
        name = f"q4_acc{level}"
        if errors[name] > TOLERANCE[level]:
            raise RuntimeError(f"onnxruntime's 4-bit MatMulNBits (accuracy_level {level}) is wrong: relative error "
                               f"{errors[name]:.2g} > {TOLERANCE[level]:g}")
    if errors["float"] > TOLERANCE[0]:
        raise RuntimeError(f"onnxruntime's float MatMul is wrong: relative error {errors['float']:.2g}")
    return (f"ran a 4-bit MatMulNBits graph (block {BLOCK_SIZE}, accuracy levels 0 and 4) and a float MatMul, "
            f"onnxruntime {ort.__version__}, {threads} threads, max relative error "
            f"{errors['q4_acc0']:.1e} (fp32 activations), {errors['q4_acc4']:.1e} (int8 activations)")
