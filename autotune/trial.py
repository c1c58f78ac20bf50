"""One trial's steps outside the search logic: build (cached) artifacts, measure in a worker."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from .backend import Artifact, Backend, Params
from .cache import artifact_dir, building
from .errors import AutotuneError
from .measurement import Measurement
from .model_source import ModelSource
from .worker import WorkerResult, WorkerTask, peak_rss_self, run_in_worker
from .workload import Workload

ARTIFACT_RECORD = "artifact.json"


def artifact_key(backend: Backend, source: ModelSource, params: Params) -> dict[str, Any]:
    """What identifies an artifact: backend, source content and the artifact-changing parameters."""
    canonical = backend.canonical_params(params)  # two spellings of one artifact share one cache entry
    return {
        "backend": backend.name,
        "backend_version": backend.version(),
        "source": source.sha256,
        "params": {name: canonical.get(name) for name in backend.artifact_params},
    }


def prepare_artifact(backend: Backend, source: ModelSource, params: Params) -> tuple[Artifact, bool]:
    """Return the cached artifact for ``params``, building it once. The flag says whether it was built now."""
    final = artifact_dir(backend.name, artifact_key(backend, source, params))
    record = final / ARTIFACT_RECORD
    if record.exists():
        return _read_artifact(final), False
    with building(final) as workdir:
        artifact = backend.prepare(source, backend.canonical_params(params), workdir)
        try:
            relative = artifact.path.resolve().relative_to(workdir.resolve())
        except ValueError:
            relative = None  # the backend chose to use a file outside the cache (e.g. the source itself)
        stored = asdict(artifact)
        stored["path"] = str(relative) if relative is not None else str(artifact.path)
        stored["relative"] = relative is not None
        (workdir / ARTIFACT_RECORD).write_text(json.dumps(stored, indent=2, default=str))
    return _read_artifact(final), True


def _read_artifact(folder: Path) -> Artifact:
    stored = json.loads((folder / ARTIFACT_RECORD).read_text())
    relative = stored.pop("relative")
    stored["path"] = folder / stored["path"] if relative else Path(stored["path"])
    return Artifact(**stored)


def machine_context() -> dict[str, object]:
    """What could explain an outlier: load average, CPU frequency, busy processes."""
    context: dict[str, object] = {}
    try:
        context["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    freq = psutil.cpu_freq()
    if freq is not None and freq.current:
        context["cpu_mhz"] = round(freq.current)
    return context


def measure_task(backend: Backend, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
    """Runs inside the worker: measure, then fill peak memory and the machine's context."""
    context = machine_context()
    measurement = backend.measure(artifact, params, workload)
    if measurement.peak_rss_bytes is None:
        measurement.peak_rss_bytes = peak_rss_self()
    measurement.context = {**context, **measurement.context}
    return measurement


def measure(backend: Backend, artifact: Artifact, params: Params, workload: Workload, *, timeout_s: float,
            memory_limit_bytes: int | None) -> WorkerResult:
    """Measure one configuration in a fresh worker process."""
    started = time.perf_counter()
    result = run_in_worker(
        WorkerTask(measure_task, (backend, artifact, params, workload)),
        timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
    )
    if result.ok and not isinstance(result.value, Measurement):
        raise AutotuneError(f"backend {backend.name!r} returned {type(result.value).__name__}, not a Measurement")
    result.wall_s = time.perf_counter() - started
    return result
