"""The hook implementations autotune finds through the ``autotune`` entry point."""

from __future__ import annotations

from collections.abc import Iterator

import autotune
from autotune import Backend, Exporter

from .backend import LlamaCppBackend
from .exporters import EXPORTERS
from .server_backend import LlamaCppServerBackend


@autotune.hookimpl
def autotune_backends() -> Iterator[Backend]:
    """The llama.cpp backends, in-process and through llama-server (yielded even without llama-cpp-python:
    ``availability`` says why)."""
    yield LlamaCppBackend()
    yield LlamaCppServerBackend()


@autotune.hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """llama-server command, Ollama Modelfile and llama-cpp-python snippet."""
    yield from EXPORTERS
