"""ONNX Runtime backend for autotune: HF → ONNX with the onnxruntime-genai model builder, tuned and timed.

Other plugins build on the conversion directly::

    from autotune_onnxruntime import hf_to_onnx

    onnx_dir = hf_to_onnx(Path("smollm2-hf"), Path("out/smollm2-onnx"), precision="fp32")
    # onnx_dir/model.onnx (+ model.onnx.data), genai_config.json, tokenizer.json

Modules import without onnxruntime; ``OnnxRuntimeBackend().availability()`` says what is missing.
"""

from .backend import OnnxRuntimeBackend, artifact_settings
from .convert import hf_to_onnx, weight_summary
from .deployment import GenaiDeployment
from .memory import predict_memory, weight_bytes
from .providers import usable_providers

__all__ = ["GenaiDeployment", "OnnxRuntimeBackend", "artifact_settings", "hf_to_onnx", "predict_memory",
           "usable_providers", "weight_bytes", "weight_summary"]
