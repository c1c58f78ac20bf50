"""What autotune is installed as: the distribution's name and version (``importlib.metadata``, never the package root)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "slm-autotune"
"""The name autotune is installed under (``pip install slm-autotune``); the import package and command are autotune."""


def installed_version() -> str:
    """autotune's installed version, or ``0+unknown`` when running from a source tree that was not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
