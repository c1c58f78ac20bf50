"""The ``autotune`` command: ``main`` (the thin parser; known errors as one line), ``run`` and ``run_options``
(``autotune run``), ``console`` and ``plot`` (what it shows), ``store_commands`` (``answer`` and ``store``)."""

from autotune.cli.main import main

__all__ = ["main"]
