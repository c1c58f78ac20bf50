"""Measuring one configuration: in a fresh worker process, alone on this host, knowing whether others were busy.

Its artifact comes from ``measure.artifacts``; what surrounded the measurement, from ``measure.machine_state``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from autotune.measure.busy import (
    MAX_WAIT_PER_MEASUREMENT_S,
    Disturbance,
    QuietWait,
    host_measurement_lock,
    watching,
)
from autotune.measure.machine_state import machine_context
from autotune.measure.tree_peak import peak_rss_self
from autotune.measure.worker import WorkerResult, WorkerTask, run_in_worker
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Backend, Params
from autotune.plugins.boundary import PluginFault
from autotune.workload import Workload


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
            quiet.reporter.warn(f"{backend.name} {artifact.label} was measured while the machine was busy: {found.describe()}; "
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
    """One worker run inside a ``watching`` window (``watched``)."""
    return watched(lambda: _measure_in_worker(backend, artifact, params, workload, timeout_s, memory_limit_bytes))


def watched(run: Callable[[], WorkerResult]) -> tuple[WorkerResult, Disturbance]:
    """``run()`` (one measurement) inside a ``watching`` window: what other processes took of the cores meanwhile,
    also kept in the measurement's ``context["busy"]`` or said in its error."""
    with watching() as watch:
        result = run()
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
