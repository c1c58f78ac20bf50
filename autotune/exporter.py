"""Exporters turn a deployment profile into something another tool consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .profile import DeploymentProfile


@dataclass(frozen=True)
class Exporter:
    """A named output format, e.g. ``llama-server`` (a shell command) or ``ollama`` (a Modelfile).

    ``backends`` lists the backends whose profiles it can render; empty means every backend.
    ``render`` returns the text; it must quote paths so the result is safe to paste into a shell.
    """

    name: str
    description: str
    render: Callable[["DeploymentProfile"], str]
    backends: tuple[str, ...] = ()

    def applies_to(self, backend: str) -> bool:
        """True when this exporter can render a profile of ``backend``."""
        return not self.backends or backend in self.backends
