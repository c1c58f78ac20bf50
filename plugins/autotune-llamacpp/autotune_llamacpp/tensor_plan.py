"""Which tensor type llama.cpp's quantizer will really write for each tensor of a model.

A file type is a mix, and dimensions decide the rest: K-quants need rows (``ne[0]``) divisible
by 256, Q4_0/Q5_x/Q8_0 by 32; the output matrix (or the token embedding when it is tied to the
output) gets more bits; *_K_M mixes give some ``attn_v`` / ``ffn_down`` layers Q6_K. This module
mirrors ``llama_tensor_get_type`` and ``tensor_type_fallback`` of ``src/llama-quant.cpp``
(llama.cpp as vendored by llama-cpp-python 0.3.36) for the file types in
``quant_types.CANDIDATES`` on dense models, so memory can be predicted before anything is
built. The tests compare it with what ``llama_model_quantize`` actually writes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from autotune.errors import AutotuneError

from .gguf_info import GgufInfo, TensorInfo, block_info
from .quant_types import DEFAULT_TENSOR_TYPE, is_float

# llama-quant.cpp: tensor_type_fallback (this llama.cpp maps Q2_K/Q3_K to Q4_0; older ones used IQ4_NL).
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
            "IQ4_XS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ2_S": "IQ4_NL",
            "IQ2_XS": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL"}

# llama-quant.cpp: tensor_allows_quantization — name fragments never quantized.
_NEVER_QUANTIZED = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
                    "indexer.q_proj.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
                    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd")
_NEVER_QUANTIZED_NAMES = ("position_embd.weight", "token_types.weight")
_TIME_MIX = re.compile(r"time_mix_(first|w0|w1|w2|v0|v1|v2|a0|a1|a2|g1|g2|decay_w1|decay_w2|lerp_fused)\.weight")
_LAYER = re.compile(r"blk\.(\d+)\.")


def _category(name: str) -> str:
    """llama-quant.cpp's tensor_get_category."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for fragment, category in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                               ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                               ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"),
                               ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if fragment in name:
            return category
    return "other"


def allows_quantization(tensor: TensorInfo) -> bool:
    """llama-quant.cpp's tensor_allows_quantization (2-D+ weights, not norms, embeddings of positions, ...)."""
    dims = list(tensor.shape)
    while len(dims) > 1 and dims[-1] == 1:  # ggml_n_dims ignores trailing 1s
        dims.pop()
    if len(dims) < 2 or not tensor.name.endswith("weight"):
        return False
    if any(fragment in tensor.name for fragment in _NEVER_QUANTIZED) or _TIME_MIX.search(tensor.name):
        return False
    return tensor.name not in _NEVER_QUANTIZED_NAMES


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _order(tensor: TensorInfo) -> tuple[int, str]:
    """llama_model_loader's weight_name_comparer: by layer number, then by name (non-layer tensors first)."""
    match = _LAYER.match(tensor.name)
    return (int(match.group(1)) if match else -1, tensor.name)


@dataclass(frozen=True)
class TensorPlan:
    """What quantizing to one file type writes: the type the mix asks for, and the type written."""

    quant: str
    requested: dict[str, str]
    """Tensor name → type the mix asks for (before row-size fallbacks)."""
    types: dict[str, str]
    """Tensor name → type written."""


def as_is(info: GgufInfo) -> TensorPlan:
    """The plan of using the file unchanged: every tensor keeps its type."""
    types = {t.name: t.type_name for t in info.tensors}
    return TensorPlan(quant=info.precision, requested=dict(types), types=types)


def plan_tensors(info: GgufInfo, quant: str) -> TensorPlan:
    """The tensor types quantizing ``info``'s file to file type ``quant`` writes.

    Tensors llama.cpp never quantizes (norms, 1-D tensors) keep their type. Raises
    ``AutotuneError`` for a file type whose mix rules are not mirrored here.
    """
    default = DEFAULT_TENSOR_TYPE.get(quant.upper())
    if default is None:
        raise AutotuneError(f"unknown llama.cpp file type {quant!r}; pick one of {', '.join(DEFAULT_TENSOR_TYPE)}")
    quant = quant.upper()
    tensors = sorted(info.tensors, key=_order)
    tied = not any(t.name == "output.weight" for t in tensors)
    n_attn_v = sum(1 for t in tensors if _category(t.name) == "attn_v")
    n_gqa = info.n_head // max(info.n_head_kv, 1)
    counters = Counter[str]()
    requested: dict[str, str] = {}
    written: dict[str, str] = {}
    for tensor in tensors:
        if not allows_quantization(tensor):
            requested[tensor.name] = written[tensor.name] = tensor.type_name
        elif is_float(default):  # a float target is applied as is: no mixes, no fallbacks
            requested[tensor.name] = written[tensor.name] = default
        else:
            choice = _mix_type(quant, default, tensor, _category(tensor.name), tied, counters, n_attn_v, info.n_layer, n_gqa)
            requested[tensor.name] = choice
            written[tensor.name] = _fallback(tensor, choice)
    return TensorPlan(quant=quant, requested=requested, types=written)


def _mix_type(quant: str, default: str, tensor: TensorInfo, category: str, tied: bool, counters: Counter[str],
              n_attn_v: int, n_layer: int, n_gqa: int) -> str:
    """llama-quant.cpp's llama_tensor_get_type_impl for dense (non-MoE, non-Falcon) models."""
    if category == "output" or (tied and category == "token_embd"):
        if tensor.shape[0] % block_info(default)[0] != 0:
            return "Q8_0"
        return default if default == "Q8_0" else "Q6_K"
    if category == "attn_v":
        index = counters["attn_v"]
        counters["attn_v"] += 1
        if quant == "Q2_K":
            return "Q4_K" if n_gqa >= 4 else "Q3_K"
        if quant == "Q3_K_M":
            return "Q5_K" if index < 2 else "Q4_K"
        if quant == "Q3_K_L":
            return "Q5_K"
        if quant in ("Q4_K_M", "Q5_K_M") and _use_more_bits(index, n_attn_v):
            return "Q6_K"
        if quant == "Q4_K_S" and index < 4:
            return "Q5_K"
        return default
    if category == "ffn_down":
        index = counters["ffn_down"]
        counters["ffn_down"] += 1
        if quant == "Q2_K":
            return "Q3_K"
        if quant == "Q3_K_M":
            return "Q5_K" if index < n_layer // 16 else "Q4_K"
        if quant == "Q3_K_L":
            return "Q5_K"
        if quant in ("Q4_K_M", "Q5_K_M") and _use_more_bits(index, n_layer):
            return "Q6_K"
        if quant == "Q4_K_S" and index < n_layer // 8:
            return "Q5_K"
        return default
    if category == "attn_output":
        return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(quant, default)
    return default


def _fallback(tensor: TensorInfo, chosen: str) -> str:
    """llama-quant.cpp's tensor_type_fallback: a type whose block divides the row, else F16.

    The K-quants step down to a 32-block type (``FALLBACK``); the llama.cpp vendored by
    llama-cpp-python 0.3.36 writes F16 when even that (or a 32-block type itself) does not
    divide the row — checked on a model with 80-wide rows. (llama.cpp's master throws for
    32-block types instead.)
    """
    row = tensor.shape[0]
    if row % block_info(chosen)[0] == 0:
        return chosen
    fallback = FALLBACK.get(chosen, chosen)
    return fallback if row % block_info(fallback)[0] == 0 else "F16"
