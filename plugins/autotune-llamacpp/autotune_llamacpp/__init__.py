"""autotune's llama.cpp backend plugin (through llama-cpp-python).

Importing this package never imports llama_cpp; the runtime is loaded only when a model is
quantized, measured or tokenized, so ``autotune plugins`` can report it as unavailable.
"""

from __future__ import annotations

from .backend import LlamaCppBackend
from .exporters import EXPORTERS

__all__ = ["EXPORTERS", "LlamaCppBackend"]
