"""``autotune --version``: autotune's version and each installed runtime's; a broken plugin costs only its own line."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autotune.distribution import DISTRIBUTION, installed_version
from autotune.errors import one_line

if TYPE_CHECKING:
    from autotune.plugins.backend import Backend



def version_lines() -> list[str]:
    """What ``--version`` prints: autotune's version, then one line per installed runtime and per broken plugin."""
    from autotune.plugins.manager import get_plugin_manager

    lines = [f"{DISTRIBUTION} {installed_version()} (the autotune command; Python {platform.python_version()}, "
             f"{platform.system()} {platform.machine()})"]
    manager = get_plugin_manager()
    backends = manager.backends()
    plugin_of = {backend: record for record in manager.records.values() for backend in record.backends}
    if backends:
        lines.append("runtimes:")
        width = max(len(name) for name in backends)
        for name, backend in sorted(backends.items()):
            record = plugin_of.get(name)
            plugin = f" (plugin {record.name} {record.version or ''})".replace(" )", ")") if record else ""
            lines.append(f"  {name:<{width}}  {runtime_state(backend)}{plugin}")
    else:
        lines.append(f"runtimes: none installed (pip install '{DISTRIBUTION}[llamacpp]', or [all])")
    broken = [record for record in manager.records.values() if record.error]
    for record in broken:
        lines.append(f"plugin {record.name} {record.version or ''}: {record.error}".replace("  ", " "))
    return lines


def runtime_state(backend: Backend) -> str:
    """The runtime's version when it is usable here, else why not; a plugin whose check raises is named, not fatal."""
    try:
        availability = backend.availability()
    except Exception as error:  # noqa: BLE001 - one plugin's bug costs its own line, not the command
        return f"unknown: its availability check raised {one_line(f'{type(error).__name__}: {error}')[:200]}"
    try:
        version = backend.version()
    except Exception as error:  # noqa: BLE001 - as above
        version = f"unknown (its version check raised {type(error).__name__})"
    if availability.available:
        return str(version or availability.version or "unknown version")
    installed = f"{version} " if version else ""
    return f"{installed}not usable here: {one_line(availability.reason)[:200]}"


class VersionAction(argparse.Action):
    """``--version``: print ``version_lines`` and exit 0 (before the required command is asked for)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print("\n".join(version_lines()))
        parser.exit(0)
