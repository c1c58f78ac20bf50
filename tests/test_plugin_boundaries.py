"""Meta-test: plugins use autotune's public API only, and reach each other only through hooks.

A plugin is what a third party ships: if the built-in ones reached into core internals or into one
another, the plugin interface would not be the one they really use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import autotune

PLUGINS = Path(__file__).parents[1] / "plugins"
PUBLIC_SUBMODULES = {"autotune", "autotune.errors", "autotune.hookspecs", "autotune.testing", "autotune.serve"}
"""Besides the top-level API: the exceptions, the hook markers, the test helpers and the serving room (prompts
files, a server on loopback, the load generator: what any runtime's server backend measures with) are public too."""


def plugin_modules() -> list[tuple[str, Path]]:
    return [(folder.name, path) for folder in sorted(PLUGINS.iterdir()) if folder.is_dir()
            for package in folder.glob("autotune_*") if package.is_dir()
            for path in sorted(package.rglob("*.py"))]


@pytest.mark.parametrize("plugin, path", plugin_modules(), ids=lambda value: str(value).split("/plugins/")[-1])
def test_a_plugin_imports_only_the_public_api_and_its_own_package(plugin: str, path: Path) -> None:
    own = plugin.replace("-", "_")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules, names = [node.module], [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [alias.name for alias in node.names], []
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top.startswith("autotune_"):
                assert top == own, f"{path.name} imports {module}: plugins reach each other only through hooks"
            elif top == "autotune":
                assert module in PUBLIC_SUBMODULES or module.startswith(("autotune.testing.", "autotune.serve.")), \
                    f"{path.name} imports {module}, which is not autotune's public API"
                if module == "autotune":
                    missing = [name for name in names if not hasattr(autotune, name)]
                    assert not missing, f"{path.name} imports {missing} that autotune does not export"
