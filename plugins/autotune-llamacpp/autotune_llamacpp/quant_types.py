"""The llama.cpp file types autotune searches over, their nominal precision, and which are reachable.

A file type (``Q4_K_M``) names a *mix*: llama.cpp picks a tensor type per tensor (see
``tensor_plan``). ``NOMINAL_BITS`` orders the mixes by precision so the tuner never
"requantizes upward" (a Q4_K_M source converted to Q5_0 gains nothing but size).
"""

from __future__ import annotations

FLOAT_TYPES = ("F32", "F16", "BF16")

NOMINAL_BITS: dict[str, float] = {
    # bits per weight of the mix's main tensor type; the *_K_M mixes add their share of
    # higher-precision tensors (llama.cpp's own figures for 7B models).
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.5625,
    "Q5_1": 6.0,
    "Q5_K_M": 5.69,
    "Q5_K_S": 5.54,
    "Q5_0": 5.5,
    "Q4_1": 5.0,
    "Q4_K_M": 4.85,
    "Q4_K_S": 4.58,
    "Q4_0": 4.5,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "Q3_K_S": 3.5,
    "Q2_K": 3.35,
}
"""Nominal bits per weight of each file type, used only to order them by precision."""

CANDIDATES: tuple[str, ...] = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
"""File types the search may produce, from the highest precision to the lowest."""

DEFAULT_TENSOR_TYPE: dict[str, str] = {
    # llama.cpp's llama_ftype_get_default_type: the tensor type a mix starts from. Only the file
    # types whose mix rules ``tensor_plan`` mirrors are listed.
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K",
    "Q5_1": "Q5_1", "Q5_0": "Q5_0", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q4_1": "Q4_1",
    "Q4_0": "Q4_0", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K",
    "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K", "Q2_K": "Q2_K",
}


def is_float(precision: str) -> bool:
    """True for unquantized sources (F32, F16, BF16)."""
    return precision.upper() in FLOAT_TYPES


def nominal_bits(precision: str) -> float | None:
    """Nominal bits per weight of a file type, or of a plain ggml tensor type; None when unknown."""
    name = precision.upper()
    if name in NOMINAL_BITS:
        return NOMINAL_BITS[name]
    import gguf

    try:
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]
    except KeyError:
        return None
    return block_bytes * 8 / block_size


def reachable_types(source_precision: str, dominant_type: str | None = None) -> list[str]:
    """File types buildable from a source of ``source_precision``, highest precision first.

    The source's own type always comes first (using the file as it is). From a float source
    every candidate of lower precision is reachable (and F16 from F32/BF16); from a quantized
    source only strictly lower nominal precision, via llama.cpp's ``allow_requantize``. A file
    type autotune does not know is judged by its ``dominant_type`` (the tensor type holding
    most weights).
    """
    source = source_precision.upper()
    source_bits = nominal_bits(source) or (nominal_bits(dominant_type) if dominant_type else None)
    if source_bits is None:
        return [source]  # nothing is provably of lower precision: use the file as it is
    reachable = [source]
    for name in CANDIDATES:
        if name == source:
            continue
        if NOMINAL_BITS[name] < source_bits or (name == "F16" and source in ("F32", "BF16")):
            reachable.append(name)
    return reachable


def llama_ftype(name: str) -> int:
    """The ``llama_cpp.LLAMA_FTYPE_*`` constant of a file type name."""
    import llama_cpp

    attribute = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    try:
        return int(getattr(llama_cpp, attribute))
    except AttributeError:
        from autotune.errors import AutotuneError

        raise AutotuneError(f"this llama-cpp-python has no file type {name}; pick one of {', '.join(CANDIDATES)}") from None
