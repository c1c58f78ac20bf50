"""The tuning loop, top to bottom as the README's "How a run works" draws it.

``tune()`` is the library entry point (the CLI and ``examples/`` call it)::

    context    the run's values in one RunContext; the budget capped at the machine, once  (context.py)
    preflight  refuse another machine's hardware, say if it is busy, open the storage
    plan       self-test the backends, give each a model it can read, declare search spaces  (sources.py)
    study      the Optuna study, resumed, seeded from the store; starting points queued    (study.py, view.py)
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

from autotune.budget import Budget, format_bytes
from autotune.context import RunContext
from autotune.decide.judgment import nothing_fits_message
from autotune.decide.selection import Progress, choose, pareto_front
from autotune.errors import NothingFits
from autotune.hardware import Hardware
from autotune.measure import tree_peak
from autotune.measure.busy import busy_warning, sample
from autotune.measure.quality_eval import QualityEvaluator
from autotune.measure.worker import remove_orphaned_scratch
from autotune.model.source import detect_format
from autotune.options import TuneOptions
from autotune.plugins.manager import PluginManager
from autotune.probe.machine import ensure_this_machine
from autotune.record import TrialRecord, config_key
from autotune.reporting import Reporter, SilentReporter
from autotune.search.assemble import Evidence, TuneResult, build_profile
from autotune.search.confirm import confirm_finalists
from autotune.search.pipeline import TrialPipeline
from autotune.search.queue import claim, enqueue_unseen, mark_abandoned, requeue
from autotune.search.sources import BackendPlan, plan_backends, reference_pool, select_backends
from autotune.search.study import open_storage, open_study, quiet_optuna, study_name
from autotune.search.trials import end_quietly, records, tell
from autotune.store.cache import check_writable
from autotune.store.measurements import MeasurementStore, Scope, runtimes_of
from autotune.store.memo import RoundsMemo
from autotune.store.shared import SharedSearch
from autotune.store.view import open_view, search_scope
from autotune.workload import Workload

BUSY_CHECK_S = 0.5  # how long the machine's load is sampled before a run that measures here starts
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
        self.context = RunContext.open(model_path, budget, workload, options, hardware=hardware, manager=manager,
                                       reporter=reporter)
        self.rng = random.Random(options.seed)

    def preflight(self) -> None:
        """Checks that need no measuring, so a run that cannot be right stops before it starts."""
        context = self.context
        measures_here = any(b.measures_this_machine for b in select_backends(context.manager, context.options.backends))
        if measures_here:
            ensure_this_machine(context.hardware)
        check_writable()  # a read-only cache is one line naming it, not a failure in every trial
        open_storage(context.options.storage)  # a bad --storage fails now, not after self-tests and conversions
        remove_orphaned_scratch()  # left by a tuner or worker killed with kill -9
        if measures_here:  # last: a run the checks above stop says only why
            busy = busy_warning(sample(BUSY_CHECK_S))  # said once at the start; each disturbed figure is said again
            if busy:
                context.reporter.warn(busy)

    def run(self) -> TuneResult:
        """Search, then choose, confirm and build the profile."""
        tree_peak.reset()  # the profile reports this run's own footprint
        self.preflight()
        context, options = self.context, self.context.options
        context.reporter.begin(context.model_path, context.hardware, context.budget, context.workload)
        plan = plan_backends(context, select_backends(context.manager, options.backends))
        scope = search_scope(context.model_path, context.hardware, context.workload, options)
        name = study_name(scope.model_name, scope.fingerprint, context.budget, options.objective, list(plan.by_name),
                          {"model": scope.model_sha256, "scope": scope.workload_key, "objective_version": 1})
        with quiet_optuna():  # its per-trial lines would repeat ours; the caller's level comes back after
            study = open_study(name, options.storage, options.seed)
            store = MeasurementStore(options.storage)
            try:
                return self._run_on(study, name, plan, store, scope)
            finally:
                store.close()

    def _run_on(self, study: optuna.Study, name: str, plan: BackendPlan, store: MeasurementStore,
                scope: Scope) -> TuneResult:
        context, options = self.context, self.context.options
        runtimes = runtimes_of(r.backend for r in plan.resolved)
        seeded = open_view(context, study, store, scope, runtimes, plan.spaces, plan.starts)
        previous = records(study)
        with context.phases.timing("quality"):  # tokenizing the evaluation text, preparing the reference
            quality = QualityEvaluator.create(
                reference_pool(context, plan.resolved), detect_format(context.model_path), context.hardware,
                context.workload, options, context.reporter) if options.measure_quality else None
        pipeline = TrialPipeline(context, quality, previous, scope.model_sha256)
        shared = SharedSearch(context, study, store, scope, runtimes, plan.spaces)
        done = {**seeded.known, **{record.key: record for record in previous}}
        new = self._search(study, plan, pipeline, done, shared, already=seeded.measured)
        if shared.settle(options.timeout_s):
            context.reporter.warn("other workers are still measuring this search; answering without their last figures")
        return self._finish(study, name, plan, pipeline, new, RoundsMemo(study, store, scope, runtimes))

    def _search(self, study: optuna.Study, plan: BackendPlan, pipeline: TrialPipeline,
                done: dict[str, TrialRecord], shared: SharedSearch, already: int = 0) -> int:
        """Ask, run and tell until ``options.trials`` configurations were measured (``already`` from the store)."""
        by_name, new, options, reporter = plan.by_name, 0, self.context.options, self.context.reporter
        progress = Progress(options.objective, options.patience, sum(map(len, plan.starts.values())), done.values())
        for _ in range(options.trials * MAX_ASKS_PER_TRIAL):
            if new + already >= options.trials or len(pipeline.dropped) == len(by_name):
                break
            if (stop := progress.done(new)) is not None:
                reporter.info(stop)
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
            params = pipeline.suggest(trial, r.backend, plan.spaces[backend_name])
            if params is None:  # its plugin raised: the backend is dropped
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
            reporter.trial(new, options.trials, record, progress.best)
        return new

    def _finish(self, study: optuna.Study, name: str, plan: BackendPlan, pipeline: TrialPipeline,
                new: int, memo: RoundsMemo) -> TuneResult:
        """Choose on the feasible front, confirm in interleaved rounds, assemble the profile."""
        all_records = records(study)
        feasible = [r for r in all_records if r.feasible]
        if not feasible:
            raise NothingFits(nothing_fits_message(all_records, self.context.budget, pipeline.dropped))
        front = pareto_front(feasible)
        winner, confirmation = choose(front, self.context.options.objective), None
        if self.context.options.confirm_rounds > 0:
            with self.context.phases.timing("confirmation"):
                winner, confirmation, _ = confirm_finalists(self.context, winner, feasible, plan.by_name, memo,
                                                            quiet=pipeline.quiet)
        evidence = Evidence(winner=winner, front=front, feasible=feasible, records=all_records,
                            confirmation=confirmation, study_name=name, storage=self.context.options.storage,
                            measured_now=new, failed=sum(r.status == "failed" for r in all_records),
                            dropped=pipeline.dropped, left_out=plan.left_out, seconds=self.context.phases.rounded())
        profile = build_profile(self.context, evidence, plan.by_name)
        peak = profile.study["tuner_peak_tree_bytes"]
        # Only where the runtimes measure here: a replay's or a fake's run tunes for a device this one only simulates.
        here = any(r.backend.measures_this_machine for r in plan.by_name.values())
        if here and peak > self.context.budget.memory_bytes:
            self.context.reporter.warn(
                f"the tuner itself (this process and its workers) peaked at {format_bytes(peak)}, over the "
                f"{format_bytes(self.context.budget.memory_bytes)} memory budget: a device with only that much "
                "memory cannot run this tuning (the quality-scoring worker is usually the largest: --no-quality skips it)")
        return TuneResult(profile=profile, records=all_records, front=front, winner=winner, study_name=name,
                          new_measurements=new)
