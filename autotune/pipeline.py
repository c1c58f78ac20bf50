"""One trial, from a configuration to its record: predict, judge, prepare, measure in a worker, score, judge.

The search loop (``autotune.tuner``) decides *which* configuration to try; this module decides what
trying it costs and what came of it. It also keeps what the run learns about each backend: that it
cannot run this model, or that its runtime crashes here (then it is dropped, not handed more trials).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict

from .backend import Backend, Params
from .budget import Budget, format_bytes
from .errors import AutotuneError, BackendUnavailable
from .hardware import Hardware
from .judgment import failure_cause, skip_before_measuring, violations
from .options import TuneOptions
from .profile import Quality
from .quality_eval import QualityEvaluator
from .reporting import Reporter
from .selftest import crash_message
from .sources import ResolvedBackend
from .study import TrialRecord
from .trial import busy_warning, machine_context, measure, prepare_artifact
from .workload import Workload


def memory_guard(budget: Budget, hardware: Hardware) -> int:
    """Resident-memory ceiling for a worker: well above the budget (so overshoots are measured), below what the machine has."""
    wanted = max(int(budget.memory_bytes * 1.5), budget.memory_bytes + 512 * 2**20)
    return min(wanted, int(min(hardware.memory.limit_bytes, hardware.memory.available_bytes) * 0.9))


class TrialPipeline:
    """Runs trials for one tuning run and remembers which backends were dropped, and why."""

    def __init__(self, budget: Budget, workload: Workload, hardware: Hardware, options: TuneOptions,
                 reporter: Reporter, quality: QualityEvaluator | None, measured_ok: set[str]) -> None:
        self.budget = budget
        self.workload = workload
        self.hardware = hardware
        self.options = options
        self.reporter = reporter
        self.quality = quality
        self.measured_ok = set(measured_ok)
        """Backends with at least one successful measurement in this study."""
        self.dropped: dict[str, str] = {}
        """Backends dropped for this run (they cannot run this model, or their runtime crashes here), with why."""
        self.crashes: dict[str, Counter[str]] = {}
        """Per backend, how many of its workers died by each signal in this run."""
        self._last_competitors: tuple[str, ...] = ()

    def run(self, number: int, resolved: ResolvedBackend, params: Params) -> TrialRecord:
        """Try one configuration; the record says what happened (measured, skipped on prediction, failed)."""
        backend, source = resolved.backend, resolved.source
        record = TrialRecord(number=number, status="failed", backend=backend.name, params=params,
                             label=describe(backend, params))
        try:
            prediction = backend.predict(source, params, self.workload, self.hardware)
        except Exception as error:  # noqa: BLE001 - a backend's bug must not end the run
            shown = str(error) if isinstance(error, AutotuneError) else f"the plugin raised {error!r}"
            record.reason, record.cause = f"cannot predict: {shown}", "cannot predict"
            return record
        record.prediction = asdict(prediction)
        skip = skip_before_measuring(prediction, self.budget)
        if skip is not None:
            record.status, record.cause, record.reason = "predicted-infeasible", skip.cause, skip.reason
            return record
        try:
            started = time.perf_counter()
            artifact, built = prepare_artifact(backend, source, params)
            if built:
                self.reporter.info(f"built {artifact.label} for {backend.name} in {time.perf_counter() - started:.1f} s "
                                   f"({format_bytes(artifact.size_bytes)}, {artifact.bits_per_weight:.2f} bits/weight)")
        except BackendUnavailable as error:
            record.reason, record.cause = f"prepare failed: {error}", "cannot run this model"
            self.dropped[backend.name] = str(error)
            self.reporter.warn(f"backend {backend.name!r} dropped for this model: {error}")
            return record
        except Exception as error:  # noqa: BLE001 - a backend's bug must not end the run
            shown = str(error) if isinstance(error, AutotuneError) else repr(error)
            record.reason, record.cause = f"prepare failed: {shown}", "prepare failed"
            return record
        record.precision = artifact.label  # the fallback shows wherever the precision does
        record.bits_per_weight = artifact.bits_per_weight
        record.artifact = {**asdict(artifact), "path": str(artifact.path)}
        self._warn_if_busy()
        self.reporter.info(f"measuring {backend.name} {record.label}")
        result = measure(backend, artifact, params, self.workload, timeout_s=self.options.timeout_s,
                         memory_limit_bytes=memory_guard(self.budget, self.hardware))
        if not result.ok:
            record.reason = f"measurement failed: {result.error}"
            record.cause = f"killed by {result.signal}" if result.signal else failure_cause(result.error or "")
            if result.peak_rss_bytes:
                record.reason += f" (peak resident memory {format_bytes(result.peak_rss_bytes)})"
            if result.signal:
                self._note_crash(backend, result.signal)
            return record
        self.measured_ok.add(backend.name)
        quality: Quality | None = self.quality.evaluate(resolved, artifact, params) if self.quality else None
        record.quality = quality.model_dump() if quality else None
        record.measurement = result.value.model_dump()
        record.violations = violations(result.value, self.budget, quality)
        record.status = "measured"
        return record

    def _warn_if_busy(self) -> None:
        """Warn once per set of competing programs: their load makes the figures noisy and slow."""
        context = machine_context()
        warning = busy_warning(context, self.hardware.cpu.usable_cores)
        busy = context.get("busy_processes", [])
        competitors = tuple(str(p).split(" (")[0] for p in busy) if isinstance(busy, list) else ()
        if warning and competitors != self._last_competitors:
            self.reporter.warn(warning)
        self._last_competitors = competitors

    def _note_crash(self, backend: Backend, signal_name: str) -> None:
        """Drop a backend whose runtime dies by a signal in its first configuration, or by one signal twice.

        A crash before any success is the runtime failing on this machine, not a bad configuration:
        handing it the remaining trials would only spend them all on the same crash.
        """
        crashes = self.crashes.setdefault(backend.name, Counter())
        crashes[signal_name] += 1
        first = backend.name not in self.measured_ok and sum(crashes.values()) == 1
        if not first and crashes[signal_name] < 2:
            return
        where = "in its first configuration" if first else f"in {crashes[signal_name]} configurations"
        why = crash_message(backend, signal_name, self.hardware, where)
        self.dropped[backend.name] = why
        self.reporter.warn(f"backend {backend.name!r} dropped for this run: {why}")


def describe(backend: Backend, params: Params) -> str:
    """The backend's compact label for a configuration; the core's own spelling when the plugin's raises."""
    try:
        return backend.describe(params)
    except Exception:  # noqa: BLE001 - a label is cosmetic
        return Backend.describe(backend, params)
