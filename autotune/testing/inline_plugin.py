"""Register backends in a fresh plugin manager without packaging them (tests, benchmarks, notebooks)."""

from __future__ import annotations

from collections.abc import Iterator

from autotune.hookspecs import hookimpl
from autotune.plugins.backend import Backend
from autotune.plugins.manager import PluginManager


class InlineBackends:
    """A plugin object contributing the given backend instances through ``autotune_backends``."""

    def __init__(self, *backends: Backend) -> None:
        self.backends = backends

    @hookimpl
    def autotune_backends(self) -> Iterator[Backend]:
        """Yield the backends given to the constructor."""
        yield from self.backends


def manager_with(*backends: Backend, builtins: bool = False, name: str = "inline") -> PluginManager:
    """A plugin manager holding only these backends (plus the built-in probes/exporters when ``builtins``)."""
    manager = PluginManager()
    if builtins:
        manager.load_builtins()
    manager.register(InlineBackends(*backends), name)
    return manager
