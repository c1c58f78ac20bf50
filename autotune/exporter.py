"""Exporters turn a deployment profile into something another tool consumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .profile import DeploymentProfile


@dataclass(frozen=True)
class Exporter:
    """A named output format, e.g. ``llama-server`` (a shell command) or ``ollama`` (a Modelfile).

    ``backends`` lists the backends whose profiles it can render; empty means every backend.
    ``render`` returns the text; it must quote paths so the result is safe to paste into a shell. It reads
    ``profile.params`` through the backend's ``params_model`` (``autotune.profile.validate_params``), never as a
    raw dict, so it renders every profile ``autotune validate`` accepts and refuses others with a ``ProfileError``.
    """

    name: str
    description: str
    render: Callable[[DeploymentProfile], str]
    backends: tuple[str, ...] = ()

    def applies_to(self, backend: str) -> bool:
        """True when this exporter can render a profile of ``backend``."""
        return not self.backends or backend in self.backends


def render_exports(exporters: Iterable[Exporter], profile: DeploymentProfile,
                   warn: Callable[[str], None]) -> dict[str, str]:
    """Every applicable exporter's text for ``profile``; an exporter that raises is named in a warning and left out.

    A broken third-party exporter must never cost the profile the whole search produced.
    """
    rendered: dict[str, str] = {}
    for exporter in exporters:
        try:
            if exporter.applies_to(profile.backend.name):
                rendered[exporter.name] = exporter.render(profile)
        except Exception as error:  # noqa: BLE001 - any plugin failure is reported, never fatal
            warn(f"exporter {exporter.name!r} failed and was left out of the profile: {error!r}")
    return rendered
