"""Finding, loading and calling plugins, with each plugin's failure isolated.

The rest of autotune talks to plugins only through ``PluginManager``'s typed methods; nothing
else touches pluggy's untyped ``hook`` attribute.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, get_args

import pluggy

import autotune.hookspecs as hookspecs
from autotune.errors import PluginError
from autotune.hardware import HardwareFact
from autotune.plugins.backend import Backend
from autotune.plugins.conversion import Conversion
from autotune.plugins.exporter import Exporter

log = logging.getLogger("autotune")

DISABLE_ENV = "AUTOTUNE_DISABLE_PLUGINS"

DEFAULT_PLUGINS = (
    "autotune.probe.cpu",
    "autotune.probe.memory",
    "autotune.probe.bandwidth",
    "autotune.probe.nvidia",
    "autotune.probe.apple",
    "autotune.profile.json_export",
)
"""Built-in plugins, registered through the same hooks a third party uses."""

_HOOK_ITEMS: dict[str, tuple[type, ...]] = {
    "autotune_backends": (Backend,),
    "autotune_exporters": (Exporter,),
    "autotune_conversions": (Conversion,),
    "autotune_hardware_facts": get_args(HardwareFact),
}
"""What each contribution hook's items must be; anything else is the plugin's fault, skipped with one warning."""


@dataclass
class PluginRecord:
    """What ``autotune plugins`` shows about one plugin."""

    name: str
    module: str
    version: str | None
    builtin: bool
    error: str | None = None
    backends: list[str] = field(default_factory=list)


def disabled_plugins() -> set[str]:
    """Plugin names listed in ``AUTOTUNE_DISABLE_PLUGINS`` (comma separated)."""
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class PluginManager:
    """A pluggy manager for the ``autotune`` project with failure-isolated, typed hook calls."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.warnings: list[str] = []
        self._faulted: set[tuple[str, str]] = set()

    # -- registration -------------------------------------------------------------------------

    def register(self, plugin: ModuleType | object, name: str, *, version: str | None = None, builtin: bool = False) -> None:
        """Register a plugin object or module under ``name`` (skipped when disabled).

        A plugin pluggy refuses (a hook implementation with arguments the spec does not have) or
        one with a misspelt ``autotune_*`` hook is named in one warning and left out; the others load.
        """
        if name in disabled_plugins():
            return
        module = getattr(plugin, "__name__", type(plugin).__module__)
        try:
            self._pm.register(plugin, name=name)
        except Exception as error:  # noqa: BLE001 - pluggy's PluginValidationError, or a duplicate name
            self._fail(name, module, version, f"cannot be registered: {_one_line(error)}", builtin=builtin)
            return
        unknown = [impl.function.__name__ for caller in self._pm.hook.__dict__.values()
                   if isinstance(caller, pluggy.HookCaller) and not caller.has_spec()
                   for impl in caller.get_hookimpls() if impl.plugin_name == name and not impl.optionalhook]
        if unknown:
            self._pm.unregister(name=name)
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("autotune_")))
            self._fail(name, module, version, f"implements {', '.join(unknown)}, which autotune does not have "
                       f"(a misspelt hook? known hooks: {known})", builtin=builtin)
            return
        self.records[name] = PluginRecord(name=name, module=module, version=version, builtin=builtin)

    def load_builtins(self) -> None:
        """Register the built-in probes and exporters."""
        for module_name in DEFAULT_PLUGINS:
            short = module_name.rsplit(".", 1)[-1]
            self._import_and_register(module_name, name=f"builtin-{short}", version=None, builtin=True)

    def load_entrypoints(self) -> None:
        """Import and register every plugin in the ``autotune`` entry-point group.

        A plugin that fails to import is recorded with its error and skipped.
        """
        for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            if entry_point.name in disabled_plugins() or entry_point.name in self.records:
                continue
            version = entry_point.dist.version if entry_point.dist else None
            try:
                plugin = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure must not stop autotune
                self._fail(entry_point.name, entry_point.value, version, f"failed to load: {error!r}")
                continue
            self.register(plugin, entry_point.name, version=version)

    def _import_and_register(self, module_name: str, name: str, version: str | None, builtin: bool) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001
            self._fail(name, module_name, version, f"failed to import: {error!r}", builtin=builtin)
            return
        self.register(module, name, version=version, builtin=builtin)

    def _fail(self, name: str, module: str, version: str | None, message: str, builtin: bool = False) -> None:
        self.records[name] = PluginRecord(name=name, module=module, version=version, builtin=builtin, error=message)
        self._warn(f"plugin {name!r} skipped: {message}")

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    # -- calling ------------------------------------------------------------------------------

    def _collect(self, hook_name: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
        """Call every implementation of a contribution hook separately, yielding (plugin, item).

        pluggy would abort the whole call when one implementation raises; calling them one by
        one keeps a broken plugin from hiding the others.
        """
        caller = getattr(self._pm.hook, hook_name)
        # Registration order, except that tryfirst/trylast implementations go first/last (as pluggy documents).
        for impl in sorted(caller.get_hookimpls(), key=lambda i: 0 if i.tryfirst else 2 if i.trylast else 1):
            name = impl.plugin_name
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
                items = list(result) if result is not None else []
            except Exception as error:  # noqa: BLE001
                self._warn(f"plugin {name!r} failed in {hook_name}: {error!r}; skipped")
                if name in self.records and not self.records[name].error:
                    self.records[name].error = f"{hook_name} raised {error!r}"
                continue
            expected = _HOOK_ITEMS.get(hook_name)
            for item in items:
                if expected is not None and not isinstance(item, expected):
                    # A str or int where a Backend belongs: this plugin's contribution is skipped, not every command.
                    kinds = " or ".join(t.__name__ for t in expected)
                    self._fault(name, hook_name, f"yielded {type(item).__name__} {repr(item)[:60]}, not "
                                                 f"{'an' if kinds[0] in 'AEIOU' else 'a'} {kinds}")
                    continue
                if hook_name == "autotune_backends" and not (isinstance(getattr(item, "name", None), str) and item.name):
                    self._fault(name, hook_name, f"yielded a {type(item).__name__} without a name (a non-empty str)")
                    continue
                yield name, item

    def _fault(self, plugin: str, hook_name: str, what: str) -> None:
        """One warning per plugin and hook for values of the wrong kind, however many it yields; recorded."""
        if (plugin, hook_name) in self._faulted:
            return
        self._faulted.add((plugin, hook_name))
        self._warn(f"plugin {plugin!r} {what} in {hook_name}; skipped")
        if plugin in self.records and not self.records[plugin].error:
            self.records[plugin].error = f"{hook_name} {what}"

    def hardware_facts(self, *, measure_bandwidth: bool = True) -> list[HardwareFact]:
        """All hardware facts from all plugins, in plugin order (``measure_bandwidth=False`` skips slow benchmarks)."""
        return [fact for _, fact in self._collect("autotune_hardware_facts", measure_bandwidth=measure_bandwidth)]

    def backends(self) -> dict[str, Backend]:
        """Backends by name; a duplicate name is reported and the later one skipped."""
        found: dict[str, Backend] = {}
        for plugin, backend in self._collect("autotune_backends"):
            if backend.name in found:
                self._warn(f"plugin {plugin!r} provides backend {backend.name!r}, which another plugin already provides; skipped")
                continue
            found[backend.name] = backend
            if plugin in self.records and backend.name not in self.records[plugin].backends:
                self.records[plugin].backends.append(backend.name)
        return found

    def backend(self, name: str) -> Backend:
        """One backend by name, or a clear error listing the known ones."""
        backends = self.backends()
        if name not in backends:
            known = ", ".join(sorted(backends)) or "none installed"
            raise PluginError(f"unknown backend {name!r} (known: {known}); see `autotune plugins`")
        return backends[name]

    def conversions(self) -> list[Conversion]:
        """All format conversions plugins contribute."""
        return [conversion for _, conversion in self._collect("autotune_conversions")]

    def exporters(self) -> dict[str, Exporter]:
        """Exporters by name (first wins on duplicates)."""
        found: dict[str, Exporter] = {}
        for plugin, exporter in self._collect("autotune_exporters"):
            if exporter.name in found:
                self._warn(f"plugin {plugin!r} provides exporter {exporter.name!r} again; skipped")
                continue
            found[exporter.name] = exporter
        return found


def _one_line(error: BaseException) -> str:
    """An exception as one short line (pluggy's validation messages span several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def get_plugin_manager(*, entrypoints: bool = True, builtins: bool = True) -> PluginManager:
    """A plugin manager with the built-ins and (unless told otherwise) installed plugins loaded."""
    manager = PluginManager()
    if builtins:
        manager.load_builtins()
    if entrypoints:
        manager.load_entrypoints()
    return manager
