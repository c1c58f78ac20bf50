"""Compiling an OpenVINO IR with tuned properties: what the decode session and the log-probabilities load.

openvino is imported only when an IR is compiled, so the plugin loads (and says what to
install) without it; ``compile_properties`` needs no openvino at all (the exporters render it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import BackendUnavailable

from .convert import IR_FILE
from .params import OpenVinoParams, openvino_params


def import_openvino() -> Any:
    """Import openvino, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable("openvino is not installed: pip install openvino nncf tokenizers") from None
    return openvino


def compile_properties(params: OpenVinoParams | Mapping[str, Any]) -> dict[str, Any]:
    """The ``compile_model`` properties for ``params`` (threads only apply to the CPU device).

    A mapping is validated first (``ProfileError`` names a bad parameter).
    """
    typed = openvino_params(params)
    properties: dict[str, Any] = {}
    if typed.device.startswith("CPU") and typed.threads is not None:
        properties["INFERENCE_NUM_THREADS"] = typed.threads
    if typed.performance_hint is not None:
        properties["PERFORMANCE_HINT"] = typed.performance_hint
    if typed.inference_precision is not None:
        properties["INFERENCE_PRECISION_HINT"] = typed.inference_precision
    if typed.kv_cache_precision is not None:
        properties["KV_CACHE_PRECISION"] = typed.kv_cache_precision
    return properties


def slice_last_logits(model: Any) -> None:
    """Make ``model`` compute logits for the last position only (what LLMPipeline does), in place.

    The hidden states entering the output projection are cut to the last position, so a
    prefill does not multiply every prompt position by the vocabulary-sized weight.
    """
    import openvino.opset13 as ops

    outputs = [o for o in model.outputs if "logits" in o.get_names()]
    if not outputs:
        return
    node = outputs[0].get_node()
    for _ in range(8):
        if node.get_type_name() == "MatMul":
            hidden = node.input_value(0)
            last = ops.slice(hidden, ops.constant([-1]), ops.constant([np.iinfo(np.int64).max]),
                             ops.constant([1]), ops.constant([1]))
            node.input(0).replace_source_output(last.output(0))
            model.validate_nodes_and_infer_types()
            return
        node = node.input_value(0).get_node()


def compile_ir(model_dir: Path, params: Mapping[str, Any], *, last_logits_only: bool) -> Any:
    """Read and compile the IR in ``model_dir`` with ``params``; a failure raises ``BackendUnavailable``."""
    ov = import_openvino()
    core = ov.Core()
    device = openvino_params(params).device
    try:
        model = core.read_model(str(model_dir / IR_FILE))
        if last_logits_only:
            slice_last_logits(model)
        return core.compile_model(model, device, compile_properties(params))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise BackendUnavailable(f"OpenVINO could not compile {model_dir} on {device} with {dict(params)}: {first}") from None
