"""Hugging Face folders for autotune: the GGUF → HF conversion (contributed through ``autotune_conversions``).

Other plugins never import this package: they receive converted folders from the tuner and read them
with the core's ``autotune.inspect_hf_folder``::

    hf_dir = gguf_to_hf(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), Path("out/smollm2-hf"))
    source = autotune.inspect_hf_folder(hf_dir)   # ModelSource(format="hf", metadata={"config": {...}, ...})
"""

from autotune import CONVERSION_RECORD, inspect_hf_folder, model_shape

from .convert import available, check_supported, gguf_metadata, gguf_to_hf, supported_architectures

__all__ = [
    "CONVERSION_RECORD", "available", "check_supported", "gguf_metadata", "gguf_to_hf", "inspect_hf_folder",
    "model_shape", "supported_architectures",
]
