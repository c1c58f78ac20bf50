"""Building a quantized GGUF with llama.cpp's own quantizer, in-process, and recording what it wrote."""

from __future__ import annotations

import time
from pathlib import Path

from autotune import Artifact
from autotune.errors import AutotuneError

from .gguf_info import GgufInfo, read_gguf_info
from .llama_log import captured_llama_log, last_error
from .quant_types import DEFAULT_TENSOR_TYPE, is_float, llama_ftype, nominal_bits
from .tensor_plan import plan_tensors


def describe_file(path: Path, requested: str, source: GgufInfo, seconds: float | None = None,
                  extra: dict[str, object] | None = None) -> Artifact:
    """An ``Artifact`` for a GGUF file, from the tensor types really in it.

    ``bits_per_weight`` is 8 × tensor data bytes / parameters of what was written;
    ``fallback_tensors`` counts tensors whose written type differs from what the ``requested``
    mix asked for (rows not divisible by the type's block).
    """
    written = read_gguf_info(path)
    details: dict[str, object] = {"requested": requested, "tensor_types": written.tensor_type_counts()}
    if requested in DEFAULT_TENSOR_TYPE:  # a mix autotune knows: count tensors written off its choice
        plan = plan_tensors(source, requested)
        off_plan = [t for t in written.tensors if t.name in plan.requested and t.type_name != plan.requested[t.name]]
        types = "/".join(sorted({t.type_name for t in off_plan}))
        if (extra or {}).get("source_file"):
            # The user's file as it is: its mix is how it was made, not something autotune's quantizer fell back to.
            if off_plan:
                details["source_mix"] = f"{len(off_plan)}/{len(plan.requested)} tensors in {types}"
        else:
            details["fallback_tensors"] = len(off_plan)
            if off_plan:
                # Rows not divisible by the type's block (256 for K-quants, 32 for Q4_0/Q8_0) fall back.
                details["fallback"] = f"{len(off_plan)}/{len(plan.requested)} tensors fell back to {types}"
    if seconds is not None:
        details["quantize_s"] = round(seconds, 3)
    details.update(extra or {})
    return Artifact(
        path=path,
        format="gguf",
        precision=requested,
        bits_per_weight=8 * written.data_bytes / max(written.parameters, 1),
        size_bytes=path.stat().st_size,
        details=details,
    )


def quantize(source: GgufInfo, quant: str, destination: Path, threads: int) -> float:
    """Quantize ``source`` to file type ``quant`` at ``destination``; return the seconds it took.

    Requantizing an already-quantized source is allowed (``allow_requantize``); the caller makes
    sure the type is not of higher precision than the source. Raises ``AutotuneError`` with
    llama.cpp's reason when it refuses.
    """
    import llama_cpp

    source_precision = source.precision
    source_bits = nominal_bits(source_precision) or nominal_bits(source.dominant_type())
    if not is_float(source_precision) and source_bits is not None and (nominal_bits(quant) or 0) > source_bits:
        raise AutotuneError(
            f"refusing to requantize {source_precision} upward to {quant}: it cannot gain quality; "
            "pick a lower-precision type or start from an F16/BF16 GGUF"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_ftype(quant)
    params.nthread = max(1, threads)
    params.allow_requantize = not is_float(source_precision)
    started = time.perf_counter()
    with captured_llama_log() as log:
        status = llama_cpp.llama_model_quantize(str(source.path).encode(), str(destination).encode(), params)
    seconds = time.perf_counter() - started
    if status != 0:
        destination.unlink(missing_ok=True)
        reason = last_error(log) or f"status {status}"
        raise AutotuneError(f"llama.cpp could not quantize {source.path.name} to {quant}: {reason}")
    return seconds
