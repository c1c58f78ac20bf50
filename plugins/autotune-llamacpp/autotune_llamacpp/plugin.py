"""The hook implementations autotune finds through the ``autotune`` entry point."""

from __future__ import annotations

from collections.abc import Iterator

import autotune
from autotune import Backend, Exporter

from .backend import LlamaCppBackend
from .exporters import EXPORTERS


@autotune.hookimpl
def autotune_backends() -> Iterator[Backend]:
    """The llama.cpp backend (yielded even without llama-cpp-python: ``availability`` says why)."""
    yield LlamaCppBackend()


@autotune.hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """llama-server command, Ollama Modelfile and llama-cpp-python snippet."""
    yield from EXPORTERS
