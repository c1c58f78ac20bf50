"""A third-party plugin in one file: an exporter that renders a systemd unit running llama-server.

Register it from your own distribution's pyproject.toml:

    [project.entry-points.autotune]
    systemd = "systemd_exporter_plugin"

then `autotune export PROFILE --format systemd`. Or try it without installing:

    .venv/bin/python examples/systemd_exporter_plugin.py profiles/<profile>.json
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import autotune
from autotune import DeploymentProfile, load_profile


def render_unit(profile: DeploymentProfile) -> str:
    """A systemd service whose ExecStart is the profile's llama-server command."""
    command = profile.exports.get("llama-server")
    if command is None:
        raise autotune.AutotuneError("this profile has no llama-server export; tune with the llamacpp backend")
    return "\n".join([
        "[Unit]",
        f"Description=llama-server for {Path(profile.model.path).name} (autotune profile)",
        "After=network.target",
        "",
        "[Service]",
        f"ExecStart={command.strip()}",
        f"MemoryMax={profile.budget.memory_bytes}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


@autotune.hookimpl
def autotune_exporters() -> Iterator[autotune.Exporter]:
    """Contribute the ``systemd`` exporter for llama.cpp profiles."""
    yield autotune.Exporter(name="systemd", description="a systemd unit running llama-server",
                            render=render_unit, backends=("llamacpp",))


if __name__ == "__main__":
    print(render_unit(load_profile(Path(sys.argv[1]))))
