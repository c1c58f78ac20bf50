"""Getting each backend a model it can read: inspect directly, or convert through plugin conversions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .backend import Availability, Backend
from .cache import artifact_dir, building
from .conversion import Conversion, find_path
from .errors import AutotuneError
from .model_source import ModelSource, cached_content_hash, detect_format


@dataclass
class ResolvedBackend:
    """A backend with the model source it will tune from (possibly converted)."""

    backend: Backend
    source: ModelSource
    conversions: list[str]


def convert_cached(conversion: Conversion, path: Path) -> Path:
    """Run a conversion once per input content; later calls return the cached output."""
    key = {"conversion": conversion.name, "source": cached_content_hash(path)}
    final = artifact_dir("conversions", key)
    marker = final / "output-path.txt"
    if not marker.exists():
        with building(final) as workdir:
            output = conversion.convert(path, workdir)
            (workdir / "output-path.txt").write_text(str(Path(output).resolve().relative_to(workdir.resolve())))
    return final / marker.read_text().strip()


def resolve(path: Path, backends: Sequence[Backend], conversions: Sequence[Conversion],
            warn: Callable[[str], None],
            availability_of: Callable[[Backend], Availability] = lambda backend: backend.availability(),
            ) -> list[ResolvedBackend]:
    """For each available backend, a ModelSource in a format it accepts; backends that cannot get one are skipped with a reason.

    ``availability_of`` decides which backends may run (the tuner passes the self-test's verdict).
    """
    source_format = detect_format(path)
    resolved = []
    for backend in backends:
        availability = availability_of(backend)
        if not availability.available:
            warn(f"backend {backend.name!r} skipped: {availability.reason}")
            continue
        chain = find_path(conversions, source_format, backend.source_formats)
        if chain is None:
            warn(f"backend {backend.name!r} skipped: it reads {', '.join(sorted(backend.source_formats))} and no installed "
                 f"conversion leads there from {source_format}")
            continue
        try:
            current = path
            for conversion in chain:
                current = convert_cached(conversion, current)
            resolved.append(ResolvedBackend(backend, backend.inspect(current), [c.name for c in chain]))
        except AutotuneError as error:
            warn(f"backend {backend.name!r} skipped: {error}")
        except Exception as error:  # noqa: BLE001 - a converter's failure must not end the run
            warn(f"backend {backend.name!r} skipped: conversion failed: {error!r}")
    return resolved
