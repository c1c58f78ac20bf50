"""Meta-tests: every hook is documented, prefixed, and implemented by at least one built-in or bundled plugin."""

from __future__ import annotations

import inspect

from autotune import hookspecs

HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("autotune_") and callable(value)]


def test_hooks_are_prefixed_and_documented() -> None:
    assert set(HOOKS) == {"autotune_hardware_facts", "autotune_backends", "autotune_conversions", "autotune_exporters"}
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 80, f"{name} needs a docstring that teaches plugin authors"


def test_module_doc_is_a_tutorial() -> None:
    doc = hookspecs.__doc__ or ""
    assert "entry-points.autotune" in doc and "@autotune.hookimpl" in doc and "AUTOTUNE_DISABLE_PLUGINS" in doc
