"""The tuning loop: ask Optuna, predict, prepare, measure in a worker, score quality, tell, choose.

``tune()`` is the library entry point; the CLI is a thin wrapper around it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import optuna
from optuna.trial import TrialState

from . import __version__
from .backend import Backend, Categorical, Params, SearchSpace
from .budget import Budget, format_bytes
from .errors import AutotuneError, BackendUnavailable, NothingFits, PluginError
from .exporter import render_exports
from .hardware import Hardware
from .model_source import cached_content_hash, detect_format
from .plugins import PluginManager
from .probe import ensure_this_machine
from .selftest import crash_message, usable, usable_all
from .profile import (Alternative, ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted, Quality)
from .quality_eval import QualityEvaluator, has_logprobs
from .selection import best_per_backend, choose, pareto_front
from .sources import ResolvedBackend, resolve
from .study import (RECORD_ATTR, open_storage, redact_url, TrialRecord, claim, config_key, enqueue, mark_abandoned, open_study, records,
                    study_name, suggest_params, violations)
from .trial import busy_warning, machine_context, measure, prepare_artifact
from .worker import remove_orphaned_scratch
from .workload import Workload

PREDICTION_MARGIN = 0.10
"""A configuration is skipped only when its predicted memory exceeds the budget by more than this
fraction: predictions are estimates (their error is reported), so a near miss is measured."""


class Reporter(Protocol):
    """Where the tuner reports progress (the CLI prints; tests collect)."""

    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None: ...


class SilentReporter:
    """A reporter that keeps messages in lists (for tests and library use)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []
        self.trials: list[TrialRecord] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def trial(self, index: int, total: int, record: TrialRecord, best: TrialRecord | None) -> None:
        self.trials.append(record)


@dataclass
class TuneOptions:
    """Everything about a run besides the model, budget and workload."""

    backends: Sequence[str] = ()
    trials: int = 12
    timeout_s: float = 300.0
    storage: str | None = None
    objective: str = "quality"
    seed: int | None = 0
    measure_quality: bool = True
    eval_text: Path | None = None
    eval_tokens: int = 1024
    chunk_tokens: int = 256
    confirm_rounds: int = 5
    strict: bool = False


@dataclass
class TuneResult:
    """The chosen profile and the evidence behind it."""

    profile: DeploymentProfile
    records: list[TrialRecord]
    front: list[TrialRecord]
    winner: TrialRecord
    study_name: str
    new_measurements: int
    notes: list[str] = field(default_factory=list)


def select_backends(manager: PluginManager, names: Sequence[str]) -> list:
    """The backends to tune: the named ones (error on unknown names), or all installed."""
    available = manager.backends()
    if not names:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown:
        known = ", ".join(sorted(available)) or "none installed"
        raise PluginError(f"unknown backend {', '.join(map(repr, unknown))} (installed: {known}); see `autotune plugins`")
    return [available[n] for n in dict.fromkeys(names)]


def memory_guard(budget: Budget, hardware: Hardware) -> int:
    """Resident-memory ceiling for a worker: well above the budget (so overshoots are measured), below what the machine has."""
    wanted = max(int(budget.memory_bytes * 1.5), budget.memory_bytes + 512 * 2**20)
    return min(wanted, int(min(hardware.memory.limit_bytes, hardware.memory.available_bytes) * 0.9))


class Tuner:
    """One tuning run over a study. Create it, then call ``run()``."""

    def __init__(self, model_path: Path, budget: Budget, workload: Workload, options: TuneOptions, *,
                 manager: PluginManager, hardware: Hardware, reporter: Reporter) -> None:
        self.model_path = model_path
        self.budget = budget
        self.workload = workload
        self.options = options
        self.manager = manager
        self.hardware = hardware
        self.reporter = reporter
        self.rng = random.Random(options.seed)
        self._last_competitors: tuple[str, ...] = ()
        self.dropped: dict[str, str] = {}
        """Backends dropped for this run (they cannot run this model, or their runtime crashes here), with why."""
        self.crashes: dict[str, Counter[str]] = {}
        """Per backend, how many of its workers died by each signal in this run."""
        self.measured_ok: set[str] = set()
        """Backends with at least one successful measurement in this study."""

    # -- set-up -------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Checks that need no measuring, so a run that cannot be right stops before it starts.

        Unknown backend names and a hardware description of another machine are refused; a memory
        budget above what this machine lets autotune use is capped there. ``run()`` calls it too.
        """
        backends = select_backends(self.manager, self.options.backends)
        if any(b.measures_this_machine for b in backends):
            ensure_this_machine(self.hardware)
        self._cap_budget_at_the_machine()
        open_storage(self.options.storage)  # a bad --storage fails now, not after the self-tests and conversions
        remove_orphaned_scratch()  # left by a tuner or worker killed with kill -9

    def _resolve(self) -> list[ResolvedBackend]:
        backends = select_backends(self.manager, self.options.backends)
        # "Runs here", not "imports here": self-tests in workers, side by side, before any conversion.
        checks = usable_all([b for b in backends if b.measures_this_machine], self.hardware)
        resolved = resolve(self.model_path, backends, self.manager.conversions(), self.reporter.warn,
                           lambda b: checks[b.name][0] if b.name in checks else b.availability())
        if not resolved:
            raise AutotuneError(
                f"no installed backend can run {self.model_path}; see the warnings above and `autotune plugins`"
            )
        return resolved

    def _reference_pool(self, resolved: list[ResolvedBackend], model_format: str) -> list[ResolvedBackend]:
        """Backends that may score quality: the tuned ones, plus any installed backend reading the source natively.

        ``--backend mlx`` on a GGUF still gets its quality measured against the GGUF run by llama.cpp.
        """
        pool = list(resolved)
        tuned = {r.backend.name for r in resolved}
        for backend in self.manager.backends().values():
            if backend.name in tuned or model_format not in backend.source_formats or not has_logprobs(backend):
                continue
            try:
                if usable(backend, self.hardware)[0].available:
                    pool.append(ResolvedBackend(backend, backend.inspect(self.model_path), []))
            except Exception as error:  # noqa: BLE001 - a reference candidate must not end the run
                self.reporter.warn(f"backend {backend.name!r} cannot serve as the quality reference: {error!r}")
        return pool

    def _plan(self, resolved: Sequence[ResolvedBackend]) -> tuple[list[ResolvedBackend], dict[str, SearchSpace],
                                                                   dict[str, list[Params]]]:
        """Each backend's search space and starting points; a backend whose plugin raises here is skipped."""
        kept, spaces, starts = [], {}, {}
        for r in resolved:
            try:
                spaces[r.backend.name] = r.backend.search_space(r.source, self.hardware, self.workload)
                starts[r.backend.name] = [r.backend.canonical_params(p) for p in
                                          r.backend.starting_points(r.source, self.hardware, self.workload)]
            except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
                self.reporter.warn(f"backend {r.backend.name!r} skipped: its plugin raised {error!r} while declaring "
                                   "its search space")
                continue
            kept.append(r)
        if not kept:
            raise AutotuneError("no backend could declare a search space; see the warnings above")
        return kept, spaces, starts

    # -- the loop -----------------------------------------------------------------------------

    def _cap_budget_at_the_machine(self) -> None:
        """A memory budget above what this process may use is capped there, with a warning."""
        limit = self.hardware.memory.limit_bytes
        if self.budget.memory_bytes > limit:  # capped once: a second call finds it equal
            why = "its cgroup limit" if self.hardware.memory.cgroup_limit_bytes == limit else "its memory"
            self.reporter.warn(f"the memory budget {format_bytes(self.budget.memory_bytes)} is above the "
                               f"{format_bytes(limit)} this machine lets autotune use ({why}); tuning within "
                               f"{format_bytes(limit)}")
            self.budget = self.budget.model_copy(update={"memory_bytes": limit})

    def run(self) -> TuneResult:
        """Search, then choose, confirm and build the profile."""
        self.preflight()
        resolved, spaces, starts = self._plan(self._resolve())
        by_name = {r.backend.name: r for r in resolved}
        model_format = detect_format(self.model_path)
        model_sha = cached_content_hash(self.model_path)
        name = study_name(model_sha, self.model_path.name.removesuffix(".gguf"), self.hardware.fingerprint,
                          self.workload, self.budget, list(by_name),
                          extra={"objective_version": 1, "quality": self.options.measure_quality,
                                 "eval": str(self.options.eval_text or "bundled"), "eval_tokens": self.options.eval_tokens})
        study = open_study(name, self.options.storage, self.options.seed)
        abandoned = mark_abandoned(study)
        if abandoned:
            self.reporter.warn(f"{abandoned} trial(s) of an interrupted run were marked failed")
        previous = records(study)
        self.measured_ok.update(r.backend for r in previous if r.status == "measured")
        if previous:
            self.reporter.info(f"resuming study {name}: {len(previous)} finished trial(s) reused, not re-measured")
        for backend_name, points in starts.items():
            for params in points:
                enqueue(study, backend_name, params)

        self.quality = QualityEvaluator.create(self._reference_pool(resolved, model_format), model_format,
                                               self.hardware, self.workload, self.options, self.reporter) \
            if self.options.measure_quality else None

        done = {record.key: record for record in previous}
        new = 0
        attempts = 0
        while new < self.options.trials and attempts < self.options.trials * 6:
            attempts += 1
            trial = study.ask()
            claim(trial)
            backend_name = trial.suggest_categorical("backend", list(by_name))
            if backend_name in self.dropped:
                # The categorical cannot shrink inside a study: skip the dropped backend, steer elsewhere.
                trial.set_user_attr("reason", f"backend dropped: {self.dropped[backend_name]}")
                study.tell(trial, state=TrialState.PRUNED)
                if len(self.dropped) == len(by_name):
                    break
                self._enqueue_unseen(study, by_name, spaces, done)
                continue
            r = by_name[backend_name]
            try:
                params = r.backend.canonical_params(suggest_params(trial, r.backend, spaces[backend_name]))
            except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
                self.dropped[backend_name] = f"its plugin raised {error!r} in canonical_params"
                self.reporter.warn(f"backend {backend_name!r} dropped for this run: {self.dropped[backend_name]}")
                study.tell(trial, state=TrialState.PRUNED)
                continue
            key = config_key(backend_name, params)
            if key in done:
                # Never re-measure: tell Optuna this point is known and steer it elsewhere.
                trial.set_user_attr("repeat_of", done[key].number)
                study.tell(trial, state=TrialState.PRUNED)
                self._enqueue_unseen(study, by_name, spaces, done)
                continue
            try:
                record = self._run_trial(trial.number, r, params)
            except KeyboardInterrupt:
                trial.set_user_attr("reason", "interrupted")
                study.tell(trial, state=TrialState.FAIL)
                raise
            self._tell(study, trial, record)
            done[key] = record
            if record.artifact is not None:  # it reached measurement (failed or not): that spent a trial
                new += 1
            best = self._best_so_far(done.values())
            self.reporter.trial(new, self.options.trials, record, best)
        return self._finish(study, name, by_name, new)

    def _enqueue_unseen(self, study: optuna.Study, by_name: dict[str, ResolvedBackend],
                        spaces: dict[str, SearchSpace], done: dict[str, TrialRecord]) -> None:
        """After a repeat, queue a random configuration not tried yet (small spaces exhaust quickly)."""
        live = sorted(set(by_name) - set(self.dropped))
        for _ in range(64 if live else 0):
            backend = self.rng.choice(live)
            params: Params = {}
            for dim_name, dim in spaces[backend].items():
                if isinstance(dim, Categorical):
                    params[dim_name] = self.rng.choice(list(dim.choices))
                else:
                    params[dim_name] = self.rng.randrange(dim.low, dim.high + 1, dim.step)
            try:
                key = config_key(backend, by_name[backend].backend.canonical_params(params))
            except Exception:  # noqa: BLE001 - the loop drops the backend when it asks for this configuration
                key = None
            if key not in done:
                enqueue(study, backend, params)
                return

    def _run_trial(self, number: int, r: ResolvedBackend, params: Params) -> TrialRecord:
        backend, source = r.backend, r.source
        try:
            label = backend.describe(params)
        except Exception:  # noqa: BLE001 - a label is cosmetic; the core's own spelling will do
            label = Backend.describe(backend, params)
        record = TrialRecord(number=number, status="failed", backend=backend.name, params=params, label=label)
        label = f"{backend.name} {record.label}"
        try:
            prediction = backend.predict(source, params, self.workload, self.hardware)
        except AutotuneError as error:
            record.reason, record.cause = f"cannot predict: {error}", "cannot predict"
            return record
        except Exception as error:  # noqa: BLE001 - a backend bug must not end the run
            record.reason, record.cause = f"cannot predict: the plugin raised {error!r}", "cannot predict"
            return record
        record.prediction = asdict(prediction)
        if prediction.memory_bytes > self.budget.memory_bytes * (1 + PREDICTION_MARGIN):
            record.status, record.cause = "predicted-infeasible", "memory"
            record.reason = (f"predicted memory {format_bytes(prediction.memory_bytes)} exceeds the "
                             f"{format_bytes(self.budget.memory_bytes)} budget; not run")
            return record
        if prediction.latency_lower_bound_ms and prediction.latency_lower_bound_ms > self.budget.latency_ms:
            record.status, record.cause = "predicted-infeasible", "latency"
            record.reason = (f"predicted latency of at least {prediction.latency_lower_bound_ms:.1f} ms exceeds the "
                             f"{self.budget.latency_ms:g} ms budget; not run")
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
        except AutotuneError as error:
            record.reason, record.cause = f"prepare failed: {error}", "prepare failed"
            return record
        except Exception as error:  # noqa: BLE001 - a backend bug must not end the run
            record.reason, record.cause = f"prepare failed: {error!r}", "prepare failed"
            return record
        record.precision = artifact.label  # the fallback shows wherever the precision does
        record.bits_per_weight = artifact.bits_per_weight
        record.artifact = {**asdict(artifact), "path": str(artifact.path)}
        context = machine_context()
        warning = busy_warning(context, self.hardware.cpu.usable_cores)
        competitors = tuple(str(p).split(" (")[0] for p in context.get("busy_processes", []))  # type: ignore[union-attr]
        if warning and competitors != self._last_competitors:  # once per set of competing programs
            self.reporter.warn(warning)
        self._last_competitors = competitors
        self.reporter.info(f"measuring {label}")
        result = measure(backend, artifact, params, self.workload, timeout_s=self.options.timeout_s,
                         memory_limit_bytes=memory_guard(self.budget, self.hardware))
        if not result.ok:
            record.reason = f"measurement failed: {result.error}"
            record.cause = f"killed by {result.signal}" if result.signal else _failure_cause(result.error or "")
            if result.peak_rss_bytes:
                record.reason += f" (peak resident memory {format_bytes(result.peak_rss_bytes)})"
            if result.signal:
                self._note_crash(backend, result.signal)
            return record
        self.measured_ok.add(backend.name)
        measurement = result.value
        quality: Quality | None = None
        if self.quality is not None:
            quality = self.quality.evaluate(r, artifact, params)
        record.quality = quality.model_dump() if quality else None
        record.measurement = measurement.model_dump()
        record.violations = violations(measurement, self.budget, quality)
        record.status = "measured"
        return record

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

    def _tell(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
        trial.set_user_attr(RECORD_ATTR, record.to_json())
        if record.status == "measured":
            for name, excess in record.violations.items():
                trial.set_constraint(name, excess)  # ≤ 0: within budget
            study.tell(trial, values=list(record.objectives()))
        elif record.status == "predicted-infeasible":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)

    def _best_so_far(self, done: Sequence[TrialRecord] | object) -> TrialRecord | None:
        feasible = [r for r in done if r.feasible]  # type: ignore[union-attr]
        return choose(pareto_front(feasible), self.options.objective) if feasible else None

    # -- the answer ---------------------------------------------------------------------------

    def _finish(self, study: optuna.Study, name: str, by_name: dict[str, ResolvedBackend], new: int) -> TuneResult:
        all_records = records(study)
        feasible = [r for r in all_records if r.feasible]
        if not feasible:
            raise NothingFits(nothing_fits_message(all_records, self.budget, self.dropped))
        front = pareto_front(feasible)
        winner = choose(front, self.options.objective)
        notes: list[str] = []
        confirmation = None
        if self.options.confirm_rounds > 0:
            from .confirm import confirm_finalists

            winner, confirmation, confirm_notes = confirm_finalists(
                winner, feasible, by_name, self.budget, self.workload, self.hardware, self.options, self.reporter)
            notes.extend(confirm_notes)
        # Failed trials include those of interrupted runs, which left no record behind.
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        profile = self._profile(winner, front, feasible, by_name, name, all_records, new, confirmation, failed)
        return TuneResult(profile=profile, records=all_records, front=front, winner=winner, study_name=name,
                          new_measurements=new, notes=notes)

    def _profile(self, winner: TrialRecord, front: list[TrialRecord], feasible: list[TrialRecord],
                 by_name: dict[str, ResolvedBackend], name: str, all_records: list[TrialRecord], new: int,
                 confirmation: object, failed: int) -> DeploymentProfile:
        r = by_name[winner.backend]
        measured = winner.measured
        assert measured is not None and measured.peak_rss_bytes is not None and winner.artifact and winner.prediction
        predicted = int(winner.prediction["memory_bytes"])
        per_backend = best_per_backend(feasible, self.options.objective)
        alternatives = {rec.key: rec for rec in [*front, *per_backend.values()] if rec.key != winner.key}
        native = next((rb for rb in by_name.values() if not rb.conversions), r)
        objective_note = {
            "quality": "lowest measured quality loss (mean KL divergence); statistically tied losses broken by p95 latency",
            "latency": "lowest p95 inter-token latency, then quality loss",
            "memory": "lowest peak memory, then quality loss",
        }[self.options.objective]
        if winner.quality_report is None or winner.quality_report.method != "kl-divergence":
            objective_note += " — quality unmeasured: highest effective bits per weight used as a proxy"
        profile = DeploymentProfile(
            autotune_version=__version__,
            hardware=self.hardware.summary(),
            model=ModelInfo(path=str(self.model_path.resolve()), format=native.source.format,
                            sha256=cached_content_hash(self.model_path), architecture=native.source.architecture,
                            parameters=native.source.parameters, precision=native.source.precision),
            backend=BackendInfo(name=winner.backend, version=r.backend.version()),
            params=winner.params,
            artifact=ArtifactInfo(**{k: winner.artifact[k] for k in
                                     ("path", "format", "precision", "bits_per_weight", "size_bytes", "details")}),
            workload=self.workload,
            budget=self.budget,
            objective=f"{self.options.objective}: {objective_note}",
            measured=measured,
            predicted=Predicted(memory_bytes=predicted,
                                memory_error=(predicted - measured.peak_rss_bytes) / measured.peak_rss_bytes,
                                breakdown=winner.prediction.get("breakdown", {})),
            quality=winner.quality_report or Quality(method="bits-per-weight proxy",
                                                     bits_per_weight=winner.bits_per_weight),
            confirmation=confirmation,  # type: ignore[arg-type]
            alternatives=[Alternative(backend=a.backend, params=a.params, precision=a.precision or "",
                                      measured=a.measured, quality=a.quality_report, trial=a.number)  # type: ignore[arg-type]
                          for a in alternatives.values()],
            study={"name": name, "storage": redact_url(self.options.storage) if self.options.storage else "default (cache sqlite)",
                   "trials_total": len(all_records), "measured_now": new,
                   "measured": sum(rec.status == "measured" for rec in all_records),
                   "predicted_infeasible": sum(rec.status == "predicted-infeasible" for rec in all_records),
                   "failed": failed,
                   "feasible": len(feasible), "conversions": {rb.backend.name: rb.conversions for rb in by_name.values()},
                   "best_per_backend": {name: rec.number for name, rec in per_backend.items()},
                   "dropped_backends": dict(self.dropped)},
        )
        exports = render_exports(self.manager.exporters().values(), profile, self.reporter.warn)
        return profile.model_copy(update={"exports": exports})


def _failure_cause(error: str) -> str:
    """A failed measurement's kind, for counting which failure dominates."""
    for cause in ("timed out", "memory guard"):
        if cause in error:
            return "killed by the memory guard" if cause == "memory guard" else cause
    return "measurement failed"


def failure_causes(all_records: Sequence[TrialRecord]) -> dict[str, tuple[str, int, int]]:
    """Per backend with failures: its most frequent failure cause, an example reason, how many, of how many trials."""
    summary: dict[str, tuple[str, int, int]] = {}
    for backend in dict.fromkeys(r.backend for r in all_records):
        tried = [r for r in all_records if r.backend == backend and r.status != "predicted-infeasible"]
        failed = [r for r in tried if r.status == "failed"]
        if not failed:
            continue
        counts = Counter(r.cause or r.reason or "unknown" for r in failed)
        cause, count = counts.most_common(1)[0]
        example = next(r.reason for r in failed if (r.cause or r.reason or "unknown") == cause)
        summary[backend] = (example or cause, count, len(tried))
    return summary


def nothing_fits_message(all_records: Sequence[TrialRecord], budget: Budget, dropped: dict[str, str] | None = None) -> str:
    """One paragraph: the real cause per backend first, then which budget failed by how much and what to relax."""
    lines = [f"No configuration met the budget ({budget.describe()})."]
    dropped = dropped or {}
    causes = failure_causes(all_records)
    for backend in dict.fromkeys([*dropped, *causes]):
        if backend in dropped:
            lines.append(f"Backend {backend} was dropped: {dropped[backend]}.")
        else:
            reason, count, tried = causes[backend]
            lines.append(f"Backend {backend}: {count} of {tried} trial(s) failed, most often: {reason}.")
    measured = [r for r in all_records if r.status == "measured"]
    if measured:
        by_memory = min(measured, key=lambda r: r.measured.peak_rss_bytes)  # type: ignore[union-attr]
        by_latency = min(measured, key=lambda r: r.measured.worst_itl_p95_ms)  # type: ignore[union-attr]
        m_mem, m_lat = by_memory.measured, by_latency.measured
        assert m_mem and m_lat and m_mem.peak_rss_bytes
        lines.append(
            f"Smallest measured memory: {format_bytes(m_mem.peak_rss_bytes)} ({by_memory.backend} "
            f"{by_memory.precision}, {m_mem.peak_rss_bytes / budget.memory_bytes:.1f}× the memory budget)."
        )
        lines.append(
            f"Lowest measured p95 latency: {m_lat.worst_itl_p95_ms:.1f} ms ({by_latency.backend} {by_latency.precision}, "
            f"{m_lat.worst_itl_p95_ms / budget.latency_ms:.1f}× the latency budget)."
        )
        lines.append(f"Relax to at least --budget {m_mem.peak_rss_bytes / 1e6 * 1.1:.0f}MB and --latency "
                     f"{m_lat.worst_itl_p95_ms * 1.1:.0f}ms, or try a smaller model.")
    skipped = [r for r in all_records if r.status == "predicted-infeasible" and r.prediction]
    # Memory- and latency-skipped configurations apart: each has its own figure and its own suggestion.
    by_memory_skip = [r for r in skipped if r.cause == "memory" or (r.cause is None and "memory" in (r.reason or ""))]
    by_latency_skip = [r for r in skipped if r not in by_memory_skip]
    if by_memory_skip:
        smallest = min(int(r.prediction["memory_bytes"]) for r in by_memory_skip)  # type: ignore[index]
        lines.append(f"{len(by_memory_skip)} configuration(s) were skipped unmeasured for memory: predicted at least "
                     f"{format_bytes(smallest)} against a {format_bytes(budget.memory_bytes)} budget"
                     f" — relax to at least --budget {smallest / 1e6 * 1.1:.0f}MB.")
    bounds = [r.prediction.get("latency_lower_bound_ms") for r in by_latency_skip if r.prediction]
    bounds = [b for b in bounds if b]
    if bounds:
        fastest = min(bounds)
        lines.append(f"{len(by_latency_skip)} configuration(s) were skipped unmeasured for latency: predicted at least "
                     f"{fastest:.1f} ms per token against a {budget.latency_ms:g} ms budget"
                     f" — relax to at least --latency {fastest * 1.1:.0f}ms.")
    return " ".join(lines)
