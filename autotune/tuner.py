"""The tuning loop, top to bottom as the README's "How a run works" draws it.

``tune()`` is the library entry point (the CLI and ``examples/`` call it)::

    preflight  refuse another machine's hardware, cap the budget at the machine, open the storage
    plan       self-test the backends, give each a model it can read, declare search spaces  (sources.py)
    study      the Optuna study, resumed; starting points queued first                       (study.py)
    loop       ask ─► TrialPipeline.run: predict, judge, prepare, measure, score ─► tell   (pipeline.py)
    choose     feasible Pareto front ─► objective ─► interleaved confirmation              (selection.py, confirm.py)
    profile    the validated profile with its exports                                       (assemble.py)
Every "within budget?" decision is made in ``judgment.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune.budget import Budget
from autotune.decide.judgment import cap_at_machine, nothing_fits_message
from autotune.decide.selection import Progress, choose, pareto_front
from autotune.errors import NothingFits
from autotune.hardware import Hardware
from autotune.measure.busy import busy_warning, sample
from autotune.measure.quality_eval import QualityEvaluator
from autotune.measure.worker import remove_orphaned_scratch
from autotune.model.source import detect_format
from autotune.options import TuneOptions
from autotune.phases import Phases
from autotune.plugins.manager import PluginManager
from autotune.probe.machine import ensure_this_machine
from autotune.record import TrialRecord, config_key
from autotune.reporting import Reporter, SilentReporter
from autotune.search.assemble import Evidence, TuneResult, build_profile
from autotune.search.confirm import confirm_finalists
from autotune.search.pipeline import TrialPipeline
from autotune.search.sources import BackendPlan, plan_backends, reference_pool, select_backends
from autotune.search.study import (
    claim,
    end_quietly,
    enqueue,
    enqueue_unseen,
    mark_abandoned,
    open_storage,
    open_study,
    quiet_optuna,
    records,
    requeue,
    study_name,
    suggest_params,
    tell,
)
from autotune.store.measurements import MeasurementStore, Scope, runtimes_of
from autotune.store.view import RoundsMemo, SharedSearch, open_view, search_scope
from autotune.workload import Workload

BUSY_CHECK_S = 0.5
"""How long the machine's load is sampled before a run that measures here starts."""
MAX_ASKS_PER_TRIAL = 6  # repeats and dropped backends cost asks, not trials: bounds them in an exhausted space


def tune(model_path: Path, budget: Budget, workload: Workload | None = None, options: TuneOptions | None = None, *,
         manager: PluginManager | None = None, hardware: Hardware | None = None,
         reporter: Reporter | None = None) -> TuneResult:
    """Tune ``model_path`` on this machine within ``budget``; return the profile and the evidence.

    Defaults: the default workload and options, the installed plugins, this machine's probe, and a
    reporter that keeps its messages. Raises ``NothingFits`` (with what to relax) when no configuration
    meets the budget, and other ``AutotuneError``s for input it cannot use.
    """
    from autotune.plugins.manager import get_plugin_manager
    from autotune.probe.machine import probe
    manager = manager or get_plugin_manager()
    return Tuner(model_path, budget, workload or Workload(), options or TuneOptions(), manager=manager,
                 hardware=hardware or probe(manager), reporter=reporter or SilentReporter()).run()


class Tuner:
    """One tuning run over a study. Create it, optionally ``preflight()``, then ``run()``."""

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
        self.phases = Phases()

    def preflight(self) -> None:
        """Checks that need no measuring, so a run that cannot be right stops before it starts."""
        if any(b.measures_this_machine for b in select_backends(self.manager, self.options.backends)):
            ensure_this_machine(self.hardware)
            busy = busy_warning(sample(BUSY_CHECK_S))  # said once at the start; each disturbed figure is said again
            if busy:
                self.reporter.warn(busy)
        self.budget, warning = cap_at_machine(self.budget, self.hardware)  # a second call finds it capped already
        if warning:
            self.reporter.warn(warning)
        open_storage(self.options.storage)  # a bad --storage fails now, not after self-tests and conversions
        remove_orphaned_scratch()  # left by a tuner or worker killed with kill -9

    def run(self) -> TuneResult:
        """Search, then choose, confirm and build the profile."""
        self.preflight()
        self.reporter.begin(self.model_path, self.hardware, self.budget, self.workload)
        plan = plan_backends(self.model_path, select_backends(self.manager, self.options.backends), self.manager,
                             self.hardware, self.workload, self.reporter.warn, self.phases, self.reporter.info,
                             named=bool(self.options.backends), objective=self.options.objective)
        scope = search_scope(self.model_path, self.hardware, self.workload, self.options)
        name = study_name(scope.model_name, scope.fingerprint, self.budget, self.options.objective, list(plan.by_name),
                          {"model": scope.model_sha256, "scope": scope.workload_key, "objective_version": 1})
        with quiet_optuna():  # its per-trial lines would repeat ours; the caller's level comes back after
            study = open_study(name, self.options.storage, self.options.seed)
            store = MeasurementStore(self.options.storage)
            try:
                return self._run_on(study, name, plan, store, scope)
            finally:
                store.close()

    def _run_on(self, study: optuna.Study, name: str, plan: BackendPlan, store: MeasurementStore,
                scope: Scope) -> TuneResult:
        runtimes = runtimes_of(r.backend for r in plan.resolved)
        seeded = open_view(study, store, scope, runtimes, plan.spaces, self.budget, self.hardware, self.reporter,
                           self.options.objective)
        previous = records(study)
        for backend_name, points in plan.starts.items():
            for params in points:
                enqueue(study, backend_name, params)
        with self.phases.timing("quality"):  # tokenizing the evaluation text, preparing the reference
            quality = QualityEvaluator.create(
                reference_pool(self.model_path, plan.resolved, self.manager, self.hardware, self.reporter.warn),
                detect_format(self.model_path), self.hardware, self.workload, self.options, self.reporter) \
                if self.options.measure_quality else None
        pipeline = TrialPipeline(self.budget, self.workload, self.hardware, self.options, self.reporter, quality,
                                 previous, self.phases, scope.model_sha256)
        shared = SharedSearch(study, store, scope, runtimes, plan.spaces, self.budget)
        done = {**seeded.known, **{record.key: record for record in previous}}
        new = self._search(study, plan, pipeline, done, shared, already=seeded.measured)
        if shared.settle(self.options.timeout_s):
            self.reporter.warn("other workers are still measuring this search; answering without their last figures")
        return self._finish(study, name, plan, pipeline, new, RoundsMemo(study, store, scope, runtimes))

    def _search(self, study: optuna.Study, plan: BackendPlan, pipeline: TrialPipeline,
                done: dict[str, TrialRecord], shared: SharedSearch, already: int = 0) -> int:
        """Ask, run and tell until ``options.trials`` configurations were measured (``already`` from the store)."""
        by_name, new = plan.by_name, 0
        progress = Progress(self.options.objective, self.options.patience,
                            sum(len(points) for points in plan.starts.values()), done.values())
        for _ in range(self.options.trials * MAX_ASKS_PER_TRIAL):
            if new + already >= self.options.trials or len(pipeline.dropped) == len(by_name):
                break
            if (stop := progress.done(new)) is not None:
                self.reporter.info(stop)
                break
            mark_abandoned(study, shared.store.alive)  # a fleet worker died mid-trial: its configuration is queued again
            trial = study.ask()
            claim(trial)
            backend_name = trial.suggest_categorical("backend", list(by_name))
            if backend_name in pipeline.dropped:
                # The categorical cannot shrink inside a study: skip the dropped backend, steer elsewhere.
                end_quietly(study, trial, TrialState.PRUNED, reason=f"backend dropped: {pipeline.dropped[backend_name]}")
                enqueue_unseen(study, plan.by_name, plan.spaces, done, pipeline.dropped, self.rng)
                continue
            r = by_name[backend_name]
            try:
                params = r.backend.canonical_params(suggest_params(trial, r.backend, plan.spaces[backend_name]))
            except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the run
                pipeline.dropped[backend_name] = f"its plugin raised {error!r} in canonical_params"
                self.reporter.warn(f"backend {backend_name!r} dropped for this run: {pipeline.dropped[backend_name]}")
                end_quietly(study, trial, TrialState.PRUNED)
                continue
            key = config_key(backend_name, params)
            with shared.claimed(backend_name, key, done) as mine:
                if not mine:  # known, or another worker measures it now: steer Optuna elsewhere
                    end_quietly(study, trial, TrialState.PRUNED, repeat_of=done[key].number if key in done else -1)
                    enqueue_unseen(study, plan.by_name, plan.spaces, done, pipeline.dropped, self.rng)
                    continue
                try:
                    record = pipeline.run(trial.number, r, params)
                except KeyboardInterrupt:
                    end_quietly(study, trial, TrialState.FAIL, reason="interrupted")
                    requeue(study, trial)  # no result: the next run measures it first
                    raise
                tell(study, trial, record)
                shared.keep(record)
            done[key] = record
            if record.spent:  # it reached measurement (failed or not): that spent a trial
                new += 1
                progress.update(done.values())
            self.reporter.trial(new, self.options.trials, record, progress.best)
        return new

    def _finish(self, study: optuna.Study, name: str, plan: BackendPlan, pipeline: TrialPipeline,
                new: int, memo: RoundsMemo) -> TuneResult:
        """Choose on the feasible front, confirm in interleaved rounds, assemble the profile."""
        all_records = records(study)
        feasible = [r for r in all_records if r.feasible]
        if not feasible:
            raise NothingFits(nothing_fits_message(all_records, self.budget, pipeline.dropped))
        front = pareto_front(feasible)
        winner, confirmation = choose(front, self.options.objective), None
        if self.options.confirm_rounds > 0:
            with self.phases.timing("confirmation"):
                winner, confirmation, _ = confirm_finalists(winner, feasible, plan.by_name, self.budget, self.workload,
                                                                self.hardware, self.options, self.reporter, memo,
                                                                quiet=pipeline.quiet)
        evidence = Evidence(winner=winner, front=front, feasible=feasible, records=all_records,
                            confirmation=confirmation, study_name=name, storage=self.options.storage,
                            measured_now=new, failed=sum(r.status == "failed" for r in all_records),
                            dropped=pipeline.dropped, left_out=plan.left_out, seconds=self.phases.rounded())
        profile = build_profile(self.model_path, self.hardware, self.workload, self.budget, self.options.objective,
                                evidence, plan.by_name, list(self.manager.exporters().values()), self.reporter.warn)
        return TuneResult(profile=profile, records=all_records, front=front, winner=winner, study_name=name,
                          new_measurements=new)
