import importlib.metadata
import logging
import sys
import types

import pytest

from autotune import hookimpl
from autotune.errors import PluginError
from autotune.plugins.manager import PluginManager
from autotune.testing import FakeBackend


class GoodPlugin:
    @hookimpl
    def autotune_backends(self):
        yield FakeBackend()


class RaisingPlugin:
    @hookimpl
    def autotune_backends(self):
        raise RuntimeError("boom")


def test_a_raising_hook_is_named_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    manager = PluginManager()
    manager.register(RaisingPlugin(), "raising")
    manager.register(GoodPlugin(), "good")
    with caplog.at_level(logging.WARNING, logger="autotune"):
        backends = manager.backends()
    assert list(backends) == ["fake"]
    assert any("'raising'" in w and "boom" in w for w in manager.warnings)
    assert "raising" in caplog.text
    assert manager.records["raising"].error and "boom" in manager.records["raising"].error


def _entry_points(*points: importlib.metadata.EntryPoint):
    return lambda group=None: [p for p in points if p.group == group]


def test_an_entry_point_that_fails_to_import_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("autotune_test_good_plugin")
    module.autotune_backends = hookimpl(lambda: [FakeBackend()])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "autotune_test_good_plugin", module)
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(
        importlib.metadata.EntryPoint("broken", "autotune_no_such_module_xyz", "autotune"),
        importlib.metadata.EntryPoint("good", "autotune_test_good_plugin", "autotune"),
    ))
    manager = PluginManager()
    manager.load_entrypoints()
    assert "failed to load" in (manager.records["broken"].error or "")
    assert list(manager.backends()) == ["fake"]
    assert len([w for w in manager.warnings if "broken" in w]) == 1


def test_disabled_plugins_are_not_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_DISABLE_PLUGINS", "good, other")
    manager = PluginManager()
    manager.register(GoodPlugin(), "good")
    assert manager.backends() == {}


def test_duplicate_backend_names_keep_the_first() -> None:
    class Second:
        @hookimpl
        def autotune_backends(self):
            yield FakeBackend(base_ms=1.0)

    manager = PluginManager()
    manager.register(GoodPlugin(), "first")
    manager.register(Second(), "second")
    assert manager.backends()["fake"].base_ms == 20.0
    assert any("already provides" in w for w in manager.warnings)


def test_unknown_backend_lists_the_known_ones() -> None:
    manager = PluginManager()
    manager.register(GoodPlugin(), "good")
    with pytest.raises(PluginError, match="known: fake"):
        manager.backend("nope")


def test_builtins_register_through_the_same_hooks() -> None:
    manager = PluginManager()
    manager.load_builtins()
    assert all(r.builtin and r.error is None for r in manager.records.values()), manager.records
    assert "json" in manager.exporters()
    kinds = {type(f).__name__ for f in manager.hardware_facts()}
    assert {"CpuInfo", "MemoryInfo"} <= kinds
