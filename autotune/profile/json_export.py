"""Built-in exporter: the profile itself as JSON (registered through ``autotune_exporters``)."""

from __future__ import annotations

from collections.abc import Iterator

from autotune.hookspecs import hookimpl
from autotune.plugins.exporter import Exporter
from autotune.profile.schema import DeploymentProfile


def render_json(profile: DeploymentProfile) -> str:
    """The profile without its exports section (which would contain itself)."""
    return profile.model_copy(update={"exports": {}}).to_json()


@hookimpl
def autotune_exporters() -> Iterator[Exporter]:
    """Contribute the ``json`` exporter."""
    yield Exporter(name="json", description="the deployment profile as JSON", render=render_json)
