"""Conversions between model formats (gguf → hf, hf → onnx, ...), contributed by plugins."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Conversion:
    """Turns a model folder/file of ``source_format`` into ``target_format`` inside ``out_dir``.

    ``convert(source_path, out_dir)`` returns the path of the converted model (inside ``out_dir``).
    ``available()`` returns ``None`` when the converter can run here, else the reason it cannot.
    ``memory_estimate(source_path)`` (optional) is the peak memory the conversion needs, estimated in
    milliseconds from the source's header: a conversion needing more than the machine has is refused
    with its estimate instead of being attempted.
    """

    name: str
    source_format: str
    target_format: str
    convert: Callable[[Path, Path], Path]
    available: Callable[[], str | None] = lambda: None
    memory_estimate: Callable[[Path], int | None] = lambda source: None


def find_path(conversions: Iterable[Conversion], source: str, targets: Iterable[str]) -> list[Conversion] | None:
    """Shortest chain of available conversions from ``source`` to any of ``targets`` ([] if already there)."""
    wanted = set(targets)
    if source in wanted:
        return []
    usable = [c for c in conversions if c.available() is None]
    queue: deque[tuple[str, list[Conversion]]] = deque([(source, [])])
    seen = {source}
    while queue:
        fmt, chain = queue.popleft()
        for conversion in usable:
            if conversion.source_format != fmt or conversion.target_format in seen:
                continue
            next_chain = chain + [conversion]
            if conversion.target_format in wanted:
                return next_chain
            seen.add(conversion.target_format)
            queue.append((conversion.target_format, next_chain))
    return None
