"""autotune's OpenVINO backend: stateful IRs from HF checkpoints, NNCF weight compression, tuned compile properties."""

from .backend import OpenVINOBackend
from .compile import compile_properties
from .convert import conversion_unavailable, convert_hf_to_openvino
from .devices import openvino_accelerators
from .exporters import render_config, render_genai, render_python
from .genai import load_pipeline
from .ir_info import IrInfo, read_ir_info
from .weight_formats import WEIGHT_FORMATS, WeightFormat

__all__ = [
    "IrInfo", "OpenVINOBackend", "WEIGHT_FORMATS", "WeightFormat", "compile_properties", "conversion_unavailable",
    "convert_hf_to_openvino", "load_pipeline", "openvino_accelerators", "read_ir_info", "render_config", "render_genai",
    "render_python",
]
