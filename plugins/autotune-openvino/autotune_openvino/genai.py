"""openvino-genai's ``LLMPipeline`` on a tuned IR: what ``autotune.load`` returns and the ``openvino-genai`` export builds.

The pipeline gets the profile's device and compile properties (``compile.compile_properties``) and the SDPA
attention backend: a stateful model with its KV cache as internal state, what autotune measured with its
own infer request (the CPU's default backend is a paged-attention cache with its own sizing, and the
``KV_CACHE_PRECISION`` measured is the stateful cache's). LLMPipeline also computes logits for the last
position only, as the measured model did.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotune.errors import BackendUnavailable

from .compile import compile_properties
from .convert import TOKENIZER_IR
from .params import OpenVinoParams, openvino_params

ATTENTION_BACKEND = "SDPA"


def import_genai() -> Any:
    """Import openvino_genai, or raise ``BackendUnavailable`` saying how to install it."""
    try:
        import openvino_genai
    except ImportError:
        raise BackendUnavailable("openvino-genai is not installed: pip install 'slm-autotune-openvino[genai]'") from None
    return openvino_genai


def pipeline_arguments(params: OpenVinoParams | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``LLMPipeline``'s device and keyword properties for ``params`` (validated: ``ProfileError`` names a bad one)."""
    typed = openvino_params(params)
    return typed.device, {"ATTENTION_BACKEND": ATTENTION_BACKEND, **compile_properties(typed)}


def load_pipeline(model_dir: Path, params: OpenVinoParams | Mapping[str, Any]) -> Any:
    """An ``openvino_genai.LLMPipeline`` on ``model_dir`` with ``params``; ``BackendUnavailable`` when it cannot load."""
    genai = import_genai()
    if not (model_dir / TOKENIZER_IR).is_file():
        raise BackendUnavailable(f"{model_dir} has no {TOKENIZER_IR}: LLMPipeline needs the tokenizer converted to "
                                 "OpenVINO (pip install openvino-tokenizers, then convert the model again)")
    device, properties = pipeline_arguments(params)
    try:
        return genai.LLMPipeline(str(model_dir), device, **properties)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise BackendUnavailable(f"openvino-genai could not load {model_dir} on {device}: {first}") from None
