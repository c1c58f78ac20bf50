"""Reading hardware captures (``system.txt`` as in ``tests/fixtures/hardware/``) for probe tests.

A capture holds the raw output of ``lscpu``, ``/proc/meminfo``, cgroup files, sysfs cache lines and
``nvidia-smi`` under ``### name`` headings; probe plugins test their parsers against such captures
instead of the machine running the tests.
"""

from __future__ import annotations

import re
from pathlib import Path


def sections(machine: Path) -> dict[str, str]:
    """A capture folder's ``system.txt`` split at its ``### name`` lines: name → body."""
    found: dict[str, str] = {}
    for block in re.split(r"^### ", (machine / "system.txt").read_text(), flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        found[name.strip()] = body
    return found


def write_text(path: Path, text: str) -> None:
    """Write one line-terminated file, creating its folders (for fake sysfs/cgroup trees)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
