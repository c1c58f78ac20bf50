"""One trial's steps outside the search logic: build (cached) artifacts, measure in a worker."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from autotune.measure.busy import (
    MAX_WAIT_PER_MEASUREMENT_S,
    Disturbance,
    QuietWait,
    host_measurement_lock,
    watching,
)
from autotune.measure.worker import WorkerResult, WorkerTask, peak_rss_self, run_in_worker
from autotune.measurement import Measurement
from autotune.model.source import ModelSource
from autotune.plugins.backend import Artifact, Backend, Params, runtime_version
from autotune.plugins.boundary import PluginFault, checked
from autotune.store.cache import artifact_dir, building
from autotune.workload import Workload

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
    return _read_artifact(final, source), True


def _read_artifact(folder: Path, source: ModelSource) -> Artifact:
    stored = json.loads((folder / ARTIFACT_RECORD).read_text())
    location = stored.pop("location", None)
    if location is None:  # written before locations were recorded: "relative" to the cache or as given
        location = "cache" if stored.pop("relative", False) else "absolute"
    stored["path"] = {"source": Path(source.path).resolve(), "cache": folder / stored["path"],
                      "absolute": Path(stored["path"])}[location]
    return Artifact(**stored)


def page_cache_fraction(path: Path) -> float | None:
    """Fraction of a file's pages resident in the page cache (Linux/macOS ``mincore``), or None if unknown.

    A cold model file makes load time (and the first runs) slower; recording this explains such outliers.
    """
    import ctypes
    import ctypes.util
    import mmap

    try:
        length = path.stat().st_size
        if not path.is_file() or length == 0:
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = (ctypes.c_ubyte * pages)()
        with path.open("rb") as handle:
            # Mapping does not read the file; mincore only asks the kernel which pages are resident.
            address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, handle.fileno(), 0)
            if address in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                status = libc.mincore(address, length, vector)
            finally:
                libc.munmap(address, length)
        if status != 0:
            return None
        return sum(byte & 1 for byte in vector) / pages
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def busy_processes(limit: int = 3, own: int | None = None) -> list[str]:
    """Other processes using CPU right now (name and percent of one core over 0.1 s)."""
    import time

    own = own or os.getpid()
    candidates = []
    for process in psutil.process_iter(["pid", "name"]):
        if process.info["pid"] == own:
            continue
        try:
            process.cpu_percent(None)
            candidates.append(process)
        except psutil.Error:
            continue
    time.sleep(0.1)
    usage = []
    for process in candidates:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        if percent >= 20:
            usage.append((percent, f"{process.info['name']} ({percent:.0f}%)"))
    return [label for _, label in sorted(usage, reverse=True)[:limit]]


def machine_context(artifact_path: Path | None = None) -> dict[str, object]:
    """What could explain an outlier: load average, CPU frequency, busy processes, a cold model file."""
    context: dict[str, object] = {}
    try:
        context["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    freq = psutil.cpu_freq()
    if freq is not None and freq.current:
        context["cpu_mhz"] = round(freq.current)
    busy = busy_processes()
    if busy:
        context["busy_processes"] = busy
    if artifact_path is not None:
        fraction = page_cache_fraction(artifact_path)
        if fraction is not None:
            context["model_in_page_cache"] = round(fraction, 3)
    return context


def measure_task(backend: Backend, artifact: Artifact, params: Params, workload: Workload) -> Measurement:
    """Runs inside the worker: measure, then fill peak memory and the machine's context."""
    context = machine_context(artifact.path)
    measurement = backend.measure(artifact, params, workload)
    if not isinstance(measurement, Measurement):
        raise PluginFault(not_a_measurement(backend, measurement))
    if measurement.peak_rss_bytes is None:
        measurement.peak_rss_bytes = peak_rss_self()
    measurement.context = {**context, **measurement.context}
    return measurement


def measure(backend: Backend, artifact: Artifact, params: Params, workload: Workload, *, timeout_s: float,
            memory_limit_bytes: int | None, quiet: QuietWait | None = None) -> WorkerResult:
    """Measure one configuration in a fresh worker process, alone on this host, knowing whether others were busy.

    The host's measurement lock is held around it (other tuners on this host wait). What other processes
    and the hypervisor took of the cores over the measurement is kept in ``context["busy"]`` (a failure's
    error says it too). A disturbed measurement is measured again once the machine is quiet, when ``quiet``
    still has time to wait; the less disturbed of the two is returned, and one still disturbed is listed in
    ``quiet.disturbed``. A backend whose figures are not measured here (a replay, formulas) is run as it is.
    """
    if not backend.measures_this_machine:
        return _measure_in_worker(backend, artifact, params, workload, timeout_s, memory_limit_bytes)
    with host_measurement_lock():
        result, found = _measure_watched(backend, artifact, params, workload, timeout_s, memory_limit_bytes)
        if quiet is not None and found.disturbed and quiet.remaining_s >= quiet.sample_s:
            quiet.warn(f"{backend.name} {artifact.label} was measured while the machine was busy: {found.describe()}; "
                       f"waiting up to {min(quiet.remaining_s, MAX_WAIT_PER_MEASUREMENT_S):.0f} s for a quiet "
                       "machine to measure it again")
            if quiet.until_quiet() is not None:
                again, second = _measure_watched(backend, artifact, params, workload, timeout_s, memory_limit_bytes)
                # Keep the figure less disturbed; a success over a failure (the failure may have been the load).
                if (again.ok, -second.load) >= (result.ok, -found.load):
                    result, found = again, second
        if quiet is not None and found.disturbed:
            quiet.disturbed.append(found)
    return result


def _measure_watched(backend: Backend, artifact: Artifact, params: Params, workload: Workload, timeout_s: float,
                     memory_limit_bytes: int | None) -> tuple[WorkerResult, Disturbance]:
    """One worker run inside a ``watching`` window; the disturbance also goes into the measurement or the error."""
    with watching() as watch:
        result = _measure_in_worker(backend, artifact, params, workload, timeout_s, memory_limit_bytes)
    found = watch.result
    assert found is not None
    if result.ok and isinstance(result.value, Measurement):
        result.value.context = {**result.value.context, "busy": found.as_context()}
    elif found.disturbed and result.error:
        result.error += f" (while the machine was busy: {found.describe()})"
    return result, found


def _measure_in_worker(backend: Backend, artifact: Artifact, params: Params, workload: Workload, timeout_s: float,
                       memory_limit_bytes: int | None) -> WorkerResult:
    """Measure one configuration in a fresh worker process."""
    started = time.perf_counter()
    result = run_in_worker(
        WorkerTask(measure_task, (backend, artifact, params, workload)),
        timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
    )
    if result.ok and not isinstance(result.value, Measurement):
        # A plugin's bug costs this configuration, never the run: raising here would end it with the trial RUNNING.
        result = WorkerResult(ok=False, error=not_a_measurement(backend, result.value), error_type=PluginFault.__name__,
                              peak_rss_bytes=result.peak_rss_bytes, output_tail=result.output_tail)
    result.wall_s = time.perf_counter() - started
    return result


def not_a_measurement(backend: Backend, value: object) -> str:
    """The failure of a backend whose ``measure`` returned something other than a ``Measurement``."""
    return f"backend {backend.name!r} returned {type(value).__name__}, not a Measurement"
