"""Artifacts built once: the content-addressed cache of what a backend's ``prepare`` wrote, keyed by backend,
runtime version, source content and the artifact-changing parameters."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Backend, Params, runtime_version
from autotune.plugins.boundary import checked
from autotune.store.cache import artifact_dir, building
from autotune.store.page_cache import drop_cached_pages

ARTIFACT_RECORD = "artifact.json"


def artifact_key(backend: Backend, source: ModelSource, params: Params) -> dict[str, Any]:
    """What identifies an artifact: backend, source content and the artifact-changing parameters."""
    canonical = backend.canonical_params(params)  # two spellings of one artifact share one cache entry
    return {
        "backend": backend.name,
        "backend_version": runtime_version(backend),
        "source": source.sha256,
        "params": {name: canonical.get(name) for name in backend.artifact_params},
    }


def output_key(backend: Backend, source: ModelSource, params: Params) -> dict[str, Any]:
    """What identifies a configuration's outputs: its artifact and the runtime settings that change outputs.

    Quality is scored once per output key (``Backend.output_params``): thread counts or batch sizes share one score,
    a quantized KV cache gets its own.
    """
    canonical = backend.canonical_params(params)
    return {**artifact_key(backend, source, params),
            "runtime": {name: canonical.get(name) for name in backend.output_params}}


def prepare_artifact(backend: Backend, source: ModelSource, params: Params) -> tuple[Artifact, bool]:
    """Return the cached artifact for ``params``, building it once. The flag says whether it was built now.

    An artifact that is the source itself (a GGUF used as is) is recorded as "the source", never by
    path: the same content tuned under another name, folder or working directory must point at the
    file the user gave this time, absolute.
    """
    final = artifact_dir(backend.name, artifact_key(backend, source, params))
    record = final / ARTIFACT_RECORD
    if record.exists():
        return _read_artifact(final, source), False
    with building(final) as workdir:
        artifact = checked(backend.prepare(source, backend.canonical_params(params), workdir), Artifact,
                           f"{backend.name}.prepare()")
        stored = asdict(artifact)
        resolved = artifact.path.resolve()
        if resolved == Path(source.path).resolve():
            stored["path"], stored["location"] = "", "source"
        elif resolved.is_relative_to(workdir.resolve()):
            stored["path"], stored["location"] = str(resolved.relative_to(workdir.resolve())), "cache"
        else:  # the backend chose a file of its own outside the cache
            stored["path"], stored["location"] = str(resolved), "absolute"
        (workdir / ARTIFACT_RECORD).write_text(json.dumps(stored, indent=2, default=str))
    drop_cached_pages(final)  # measured as read from the disk, not from the pages its writing left
    return _read_artifact(final, source), True


def _read_artifact(folder: Path, source: ModelSource) -> Artifact:
    stored = json.loads((folder / ARTIFACT_RECORD).read_text())
    location = stored.pop("location", None)
    if location is None:  # written before locations were recorded: "relative" to the cache or as given
        location = "cache" if stored.pop("relative", False) else "absolute"
    stored["path"] = {"source": Path(source.path).resolve(), "cache": folder / stored["path"],
                      "absolute": Path(stored["path"])}[location]
    return Artifact(**stored)
