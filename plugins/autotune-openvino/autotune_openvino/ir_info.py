"""What an OpenVINO IR holds: its weights (count, storage types, group sizes) and its KV-cache layout.

Weights are found structurally — the constant feeding a ``MatMul``'s second input or an
embedding ``Gather``'s table, through NNCF's decompression ops (Convert, Subtract, Multiply,
Reshape) — so scales and zero points are told apart from the weights they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DECOMPRESSION_OPS = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}

TYPE_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "u8": "int8", "i8": "int8", "u4": "int4", "i4": "int4"}
"""OpenVINO element type → the precision name autotune reports."""


@dataclass(frozen=True)
class IrInfo:
    """Facts read from an IR's graph (nothing is compiled).

    ``weight_elements`` / ``weight_tensors`` count weights by storage type (``int4``, ``int8``,
    ``fp16``, ...); ``backup_elements`` are the embedding and output-projection weights, which
    NNCF keeps at 8 bits when it compresses the rest to 4; ``hidden`` is the embedding width. ``kv_layers`` × (``kv_heads``,
    ``head_dim``) describe the stateful KV cache (one key and one value state per layer).
    """

    parameters: int
    weight_elements: dict[str, int]
    weight_tensors: dict[str, int]
    group_sizes: dict[str, int]
    backup_elements: int
    bin_bytes: int
    kv_layers: int
    kv_heads: int
    head_dim: int
    vocab: int
    hidden: int
    inputs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def precision(self) -> str:
        """The lowest weight precision present (``int4`` for an int4 model with int8 embeddings)."""
        for name in ("int4", "int8", "fp16", "bf16", "fp32"):
            if self.weight_elements.get(name):
                return name
        return "fp32"

    @property
    def compressed(self) -> bool:
        """True when NNCF (or another tool) already stored weights as integers."""
        return self.precision in {"int4", "int8"}

    def bits_per_weight(self) -> float:
        """Effective bits per weight from the ``.bin`` file (weights, scales and zero points together)."""
        return 8 * self.bin_bytes / self.parameters if self.parameters else 0.0


def read_ir_info(xml_path: Path, core: Any | None = None) -> IrInfo:
    """Read ``xml_path`` (and its ``.bin``) and describe its weights and cache."""
    import openvino as ov

    model = (core or ov.Core()).read_model(str(xml_path))
    weights: dict[str, Any] = {}  # friendly name → weight Constant (shared tables counted once)
    backup: set[str] = set()
    hidden = 0
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "MatMul":
            constant = _weight_constant(op.input_value(1).get_node())
        elif kind == "Gather":
            constant = _weight_constant(op.input_value(0).get_node())
            if constant is not None:
                backup.add(constant.get_friendly_name())
                hidden = _product(list(constant.get_output_shape(0))[1:])  # [vocab, hidden] or [vocab, groups, size]
        else:
            continue
        if constant is not None:
            weights[constant.get_friendly_name()] = constant
    lm_head = _logits_weight(model)
    if lm_head is not None:
        backup.add(lm_head.get_friendly_name())
    elements: dict[str, int] = {}
    tensors: dict[str, int] = {}
    group_sizes: dict[str, int] = {}
    for constant in weights.values():
        name = TYPE_NAMES.get(constant.get_output_element_type(0).get_type_name(), "other")
        shape = list(constant.get_output_shape(0))
        count = _product(shape)
        elements[name] = elements.get(name, 0) + count
        tensors[name] = tensors.get(name, 0) + 1
        if len(shape) == 3:  # NNCF stores group-wise weights as [out, groups, group_size]
            group_sizes[str(shape[-1])] = group_sizes.get(str(shape[-1]), 0) + 1
    kv_shapes = [op.get_output_partial_shape(0) for op in model.get_ops() if op.get_type_name() == "ReadValue"]
    kv_heads = head_dim = 0
    if kv_shapes:
        kv_heads, head_dim = (_static(kv_shapes[0], 1), _static(kv_shapes[0], 3))
    logits = [o for o in model.outputs if "logits" in o.get_names()]
    vocab = _static(logits[0].get_partial_shape(), -1) if logits else 0
    bin_path = xml_path.with_suffix(".bin")
    return IrInfo(
        parameters=sum(elements.values()),
        weight_elements=elements,
        weight_tensors=tensors,
        group_sizes=group_sizes,
        backup_elements=sum(_product(list(weights[n].get_output_shape(0))) for n in backup if n in weights),
        bin_bytes=bin_path.stat().st_size if bin_path.exists() else 0,
        kv_layers=len(kv_shapes) // 2,
        kv_heads=kv_heads,
        head_dim=head_dim,
        vocab=vocab,
        hidden=hidden,
        inputs=tuple(sorted(name for port in model.inputs for name in port.get_names())),
    )


def _weight_constant(node: Any) -> Any | None:
    """The largest Constant reachable upward through decompression ops: the weight, not its scale."""
    best = None
    stack = [node]
    seen = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kind = current.get_type_name()
        if kind == "Constant":
            if best is None or _product(list(current.get_output_shape(0))) > _product(list(best.get_output_shape(0))):
                best = current
        elif kind in DECOMPRESSION_OPS:
            stack.extend(value.get_node() for value in current.input_values())
    if best is None or len(best.get_output_shape(0)) < 2:
        return None  # an activation × activation MatMul (attention) or a constant index
    return best


def _logits_weight(model: Any) -> Any | None:
    """The output projection: the first MatMul above the ``logits`` result."""
    outputs = [o for o in model.outputs if "logits" in o.get_names()]
    if not outputs:
        return None
    node = outputs[0].get_node()
    for _ in range(8):  # Result ← (Convert/Reshape/...) ← MatMul
        if node.get_type_name() == "MatMul":
            return _weight_constant(node.input_value(1).get_node())
        if not node.inputs():
            return None
        node = node.input_value(0).get_node()
    return None


def _product(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def _static(shape: Any, index: int) -> int:
    dim = shape[index]
    return dim.get_length() if dim.is_static else 0
