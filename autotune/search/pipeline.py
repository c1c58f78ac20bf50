"""One trial, from a configuration to its record: predict, judge, prepare, screen, measure, score, judge.

The search loop (``autotune.tuner``) decides *which* configuration to try; this module decides what
trying it costs and what came of it. It also keeps what the run learns about each backend: that it
cannot run this model, or that its runtime crashes here (then it is dropped, not handed more trials).

Measurement is multi-fidelity. Once a full measurement exists to compare with, a new configuration is
first *screened*: one short timed run at the start of the context, no deep run, no quality score
(about a fifth of a full measurement's time, and no quality scoring at all). Only a configuration the
screen cannot rule out gets the full protocol and its quality score. A screen rules a configuration
out when it is over a budget beyond the noise, or when it cannot win: slower than the best measured
configuration with the same quality (same artifact and output settings, ``Backend.output_params``), or with
no loss at all, by more than the noise.
"""

from __future__ import annotations

import time
from collections import Counter

import optuna

from autotune.budget import format_bytes
from autotune.context import RunContext
from autotune.decide.judgment import (
    failure_cause,
    memory_guard,
    screened_over_budget,
    skip_before_measuring,
    violations,
)
from autotune.decide.selection import RUN_TO_RUN_NOISE
from autotune.errors import AutotuneError, BackendUnavailable
from autotune.measure.artifacts import prepare_artifact
from autotune.measure.busy import Disturbance, QuietWait
from autotune.measure.quality_eval import QualityEvaluator
from autotune.measure.selftest import crash_message
from autotune.measure.trial import measure
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Backend, Params, Prediction, SearchSpace, within_cores
from autotune.plugins.boundary import PluginFault, checked, checked_params, warn_once
from autotune.record import TrialRecord, artifact_info
from autotune.search.refusals import remember
from autotune.search.sources import ResolvedBackend, cores_left_free
from autotune.search.space import suggest_params
from autotune.workload import Workload

SCREEN_NOISE = RUN_TO_RUN_NOISE
"""A screen is only trusted to rule out what is worse than the run-to-run noise."""
SCREEN_GEN_TOKENS = 32


PROBE_SHARE = 3
"""A backend's first short run may take this fraction (1/3) of ``--timeout``: a screen costs about a fifth of a full
measurement, so a short run that needs more cannot be followed by a full one within the timeout."""


COMFORT = 2.0
"""A configuration "fits comfortably" when its predicted latency lower bound is at most the budget over this."""


def full_measurement_tokens(workload: Workload) -> int:
    """Tokens one full measurement of ``workload`` prefills and decodes: a warm-up and the timed runs, then the
    fill to ``deep_start`` and its generated tokens."""
    deep = workload.deep_start + workload.gen_tokens if workload.deep_start else 0
    return (workload.runs + 1) * (workload.prompt_tokens + workload.gen_tokens) + deep


def fits_comfortably(prediction: Prediction | None, budget_ms: float, workload: Workload, timeout_s: float) -> bool:
    """Whether the prediction makes a backend's short first run needless: its latency lower bound is at most
    ``1 / COMFORT`` of the latency budget, and a full measurement at the budget's pace (every token, prefilled or
    decoded, taking the whole budget) still finishes within ``timeout_s``.

    A configuration within its budget then finishes a full measurement in time; one that does not finish was far
    slower than its budget, and its backend is dropped after that one timeout, as after a short run's
    (``TrialPipeline.run``). The default command (a 270M model, 50 ms) no longer pays a short run per backend.
    """
    bound = prediction.latency_lower_bound_ms if prediction is not None else None
    if not bound or bound * COMFORT > budget_ms:
        return False
    return full_measurement_tokens(workload) * budget_ms / 1000 <= timeout_s


def full_measurement_s(short: Measurement, workload: Workload) -> float:
    """The least time one full measurement of ``workload`` takes at a short run's speeds: loading, a warm-up and
    the timed runs (prompt, then generated tokens), and the prefill to ``deep_start`` with its generated tokens."""
    per_run = workload.prompt_tokens / short.prefill_tps + workload.gen_tokens / short.decode_tps
    deep = workload.deep_start / short.prefill_tps + workload.gen_tokens / short.decode_tps if workload.deep_start else 0.0
    return short.load_s + (workload.runs + 1) * per_run + deep


def screening_workload(workload: Workload) -> Workload:
    """The short measurement a screen takes: one timed run, fewer generated tokens, no deep-context run.

    A served workload's screen is one load of requests as long as the workload's: n-gram speculation pays over
    the length of an answer (llama-server's ngram-mod drafts 48-64 tokens at a time), and on 32-token requests of
    the copy-heavy prompts file it screened at 33 tok/s against 40 without it, where whole answers decode 1.5x
    faster with it.
    """
    gen_tokens = workload.gen_tokens if workload.served else min(workload.gen_tokens, SCREEN_GEN_TOKENS)
    return workload.model_copy(update={"runs": 1, "gen_tokens": gen_tokens, "depth": 0})


class TrialPipeline:
    """Runs trials for one tuning run and remembers which backends were dropped, and why."""

    def __init__(self, context: RunContext, quality: QualityEvaluator | None, previous: list[TrialRecord],
                 model_sha256: str = "") -> None:
        self.context = context
        self.quality = quality
        self.measured_ok = {r.backend for r in previous if r.status == "measured"}
        """Backends with at least one successful measurement in this study."""
        self.dropped: dict[str, str] = {}
        """Backends dropped for this run (they cannot run this model, or their runtime crashes here), with why."""
        self.crashes: dict[str, Counter[str]] = {}
        """Per backend, how many of its workers died by each signal in this run."""
        self.model_sha256 = model_sha256
        """The user's model (before any conversion): refusals are remembered under it."""
        self.full: list[TrialRecord] = [r for r in previous if r.status == "measured"]
        """Fully measured records of this study: the bar a screen compares against."""
        self.probed: set[str] = set()
        """Backends whose short first run showed a full measurement can finish within the timeout, or whose
        prediction made it needless (``fits_comfortably``)."""
        self.unprobed: set[str] = set()
        """Backends measured in full without a short run first, until their first full measurement ends."""
        self.quiet = QuietWait(reporter=context.reporter)
        """The run's allowance of waiting for a quiet machine to measure a disturbed configuration again."""

    def suggest(self, trial: optuna.Trial, backend: Backend, space: SearchSpace) -> Params | None:
        """Optuna's next configuration of ``backend`` in its canonical spelling; None when its plugin raised
        (the backend is dropped for this run: a plugin's bug costs its backend, never the run)."""
        try:
            suggested = suggest_params(trial, backend, space)
        except ValueError as error:  # a queued value outside the space (the space itself passed the boundary's checks)
            self.context.reporter.warn(f"a queued {backend.name} configuration is outside its search space ({error}); "
                                       "skipped")
            return None
        try:
            return checked_params(backend.canonical_params(suggested), f"{backend.name}.canonical_params()")
        except Exception as error:  # noqa: BLE001 - see above
            self.dropped[backend.name] = (str(error) if isinstance(error, PluginFault) else
                                          f"its plugin raised {error!r} in canonical_params")
            warn_once(self.context.reporter, backend.name,
                      f"backend {backend.name!r} dropped for this run: {self.dropped[backend.name]}")
            return None

    def run(self, number: int, resolved: ResolvedBackend, params: Params) -> TrialRecord:
        """Try one configuration; the record says what happened (measured, skipped on prediction, failed)."""
        backend, source = resolved.backend, resolved.source
        record = TrialRecord(number=number, status="failed", backend=backend.name, params=params,
                             label=describe(backend, params))
        try:
            prediction = checked(backend.predict(source, params, self.context.workload, self.context.hardware),
                                 Prediction, f"{backend.name}.predict()")
        except Exception as error:  # noqa: BLE001 - a backend's bug must not end the run
            shown = str(error) if isinstance(error, AutotuneError) else f"the plugin raised {error!r}"
            record.reason, record.cause = f"cannot predict: {shown}", "cannot predict"
            self._drop_on_fault(backend, error)
            return record
        record.prediction = prediction
        skip = skip_before_measuring(prediction, self.context.budget)
        if skip is not None:
            record.status, record.cause, record.reason = "predicted-infeasible", skip.cause, skip.reason
            return record
        try:
            started = time.perf_counter()
            with self.context.phases.timing("builds"):
                artifact, built = prepare_artifact(backend, source, params)
            if built:
                self.context.reporter.info(f"built {artifact.label} for {backend.name} in {time.perf_counter() - started:.1f} s "
                                   f"({format_bytes(artifact.size_bytes)}, {artifact.bits_per_weight:.2f} bits/weight)")
        except BackendUnavailable as error:
            record.reason, record.cause = f"prepare failed: {error}", "cannot run this model"
            remember(backend, self.model_sha256 or source.sha256, str(error))  # the next run skips it at once
            self.dropped[backend.name] = str(error)
            self.context.reporter.warn(f"backend {backend.name!r} dropped for this model: {error}")
            return record
        except Exception as error:  # noqa: BLE001 - a backend's bug must not end the run
            shown = str(error) if isinstance(error, AutotuneError) else repr(error)
            record.reason, record.cause = f"prepare failed: {shown}", "prepare failed"
            self._drop_on_fault(backend, error)
            return record
        record.artifact = artifact_info(artifact)  # its label (with any fallback) is the record's precision
        bar = self._bar(record, backend)
        if bar is not None:
            self.context.reporter.info(f"screening {backend.name} {record.label}")
            if not self._measure(record, backend, artifact, params, screening_workload(self.context.workload)):
                return record
            out = self._ruled_out(record, bar)
            if out is None and self.quality is not None and self.context.options.objective == "quality" and lossless(bar):
                out = self._scored_out(record, bar, resolved, artifact, params)
            if out is not None:
                record.status, record.cause, record.reason = "screened-out", "screened out", out
                return record
        if not self._can_finish(record, backend, artifact, params):
            return record
        self.context.reporter.info(f"measuring {backend.name} {record.label}")
        measured = self._measure(record, backend, artifact, params, self.context.workload)
        if backend.name in self.unprobed:
            self.unprobed.discard(backend.name)
            if not measured and record.cause == "timed out":
                self._drop_too_slow(record, backend)
        if not measured:
            return record
        if record.quality is None:  # not scored already (``_scored_out``)
            with self.context.phases.timing("quality"):
                record.quality = self.quality.evaluate(resolved, artifact, params) if self.quality else None
        quality = record.quality
        assert record.measurement is not None
        record.violations = violations(record.measurement, self.context.budget, quality)
        record.status = "measured"
        self.full.append(record)
        return record

    def _measure(self, record: TrialRecord, backend: Backend, artifact: Artifact, params: Params,
                 workload: Workload) -> bool:
        """Measure in a worker into ``record.measurement``; on failure fill the reason and return False."""
        with self.context.phases.timing("measurements"):
            result = measure(backend, artifact, params, workload, timeout_s=self.context.options.timeout_s,
                             memory_limit_bytes=memory_guard(self.context.budget, self.context.hardware), quiet=self.quiet)
        if not result.ok:
            record.reason = f"measurement failed: {result.error}"
            record.cause = f"killed by {result.signal}" if result.signal else failure_cause(result.error or "")
            if result.peak_rss_bytes:
                record.reason += f" (peak resident memory {format_bytes(result.peak_rss_bytes)})"
            if result.signal:
                self._note_crash(backend, result.signal)
            if result.error_type == PluginFault.__name__:
                self._drop_on_fault(backend, PluginFault(result.error or "a value of the wrong kind"))
            return False
        self.measured_ok.add(backend.name)
        record.measurement = result.value
        found = Disturbance.from_context(result.value.context)
        if found is not None and found.disturbed:  # re-measuring did not help, or no time was left to wait
            self.context.reporter.warn(f"#{record.number} {backend.name} {record.label} is marked as disturbed: {found.describe()}")
        return True

    def _can_finish(self, record: TrialRecord, backend: Backend, artifact: Artifact, params: Params) -> bool:
        """Before a backend's first full measurement in this study, one short run tells whether a full one can
        finish within ``--timeout``; when it cannot, the backend is dropped now with the figures that tell, instead
        of spending the whole timeout trial after trial (MLX on a 2-core CPU cannot prefill to depth 1,984 in 300 s).

        Only for backends that run here: a fake's or a replay's figures are formulas, not time spent.
        """
        if not backend.measures_this_machine or backend.name in self.measured_ok or backend.name in self.probed:
            return True
        if self.context.workload.served:
            # A served measurement is loads of requests bounded in number and seconds, with no deep-context run:
            # the single-stream arithmetic below (runs, then a fill to deep_start) does not describe it.
            return True
        self.probed.add(backend.name)
        timeout_s, workload = self.context.options.timeout_s, self.context.workload
        if fits_comfortably(record.prediction, self.context.budget.latency_ms, workload, timeout_s):
            self.unprobed.add(backend.name)
            return True
        short = screening_workload(workload)
        self.context.reporter.info(f"a short run of {backend.name} {record.label} first: can a full measurement "
                                   f"finish within --timeout {timeout_s:g}s?")
        with self.context.phases.timing("measurements"):
            result = measure(backend, artifact, params, short, timeout_s=timeout_s / PROBE_SHARE,
                             memory_limit_bytes=memory_guard(self.context.budget, self.context.hardware),
                             quiet=self.quiet)
        if not result.ok:
            if "timed out" not in (result.error or ""):
                return True  # another failure: the full measurement meets it and reports it as usual
            why = (f"a short run (1 run, {short.gen_tokens} tokens, no deep context) did not finish in "
                   f"{timeout_s / PROBE_SHARE:g} s, so a full measurement cannot finish within --timeout {timeout_s:g}s")
        else:
            m, needed = result.value, full_measurement_s(result.value, workload)
            if needed <= timeout_s:
                return True
            why = (f"a short run measured prefill at {m.prefill_tps:.0f} tok/s and decoding at {m.decode_tps:.1f} tok/s: "
                   f"one full measurement (a warm-up and {workload.runs} runs, then decoding at depth "
                   f"{workload.deep_start}) needs at least {needed:.0f} s, over --timeout {timeout_s:g}s; raise --timeout "
                   "or lower --depth/--context to tune it")
        record.reason, record.cause = f"measurement cannot finish: {why}", "timed out"
        self.dropped[backend.name] = why
        self.context.reporter.warn(f"backend {backend.name!r} dropped for this run: {why}")
        return False

    def _drop_too_slow(self, record: TrialRecord, backend: Backend) -> None:
        """A backend whose first full measurement timed out although its prediction fitted comfortably is far
        slower here than its budget: dropped, as a short run that could not finish would have dropped it."""
        timeout_s = self.context.options.timeout_s
        why = (f"its first full measurement ({backend.name} {record.label}) did not finish within --timeout "
               f"{timeout_s:g}s, which one within the {self.context.budget.latency_ms:g} ms latency budget would; "
               "raise --timeout or lower --depth/--context to tune it")
        self.dropped[backend.name] = why
        self.context.reporter.warn(f"backend {backend.name!r} dropped for this run: {why}")

    def _drop_on_fault(self, backend: Backend, error: BaseException) -> None:
        """A value of the wrong kind is the plugin's bug, not the configuration's: every trial would repeat it, so
        the backend is dropped for this run with one warning."""
        if isinstance(error, PluginFault) and backend.name not in self.dropped:
            self.dropped[backend.name] = str(error)
            warn_once(self.context.reporter, backend.name, f"backend {backend.name!r} dropped for this run: {error}")

    def _bar(self, record: TrialRecord, backend: Backend) -> TrialRecord | None:
        """The full measurement a screen of ``record`` compares against, or None to measure in full at once.

        The fastest feasible configuration with the same artifact and the same settings that change outputs
        (same quality: a quantized KV cache scores apart; same weights in memory); under the latency objective
        quality does not decide, so the fastest feasible one of any artifact. Under the quality objective a
        configuration measured with no loss at all (the source as it is) is no worse in quality than any other,
        so it is a bar for every configuration: a slower one cannot win whatever its score, and is neither
        measured in full nor scored (on 2 cores the deep run and the score cost 30 s; the screen 3 s).
        """
        if not self.context.options.screening:
            return None
        feasible = [r for r in self.full if r.feasible]
        objective = self.context.options.objective
        if objective != "latency":
            feasible = [r for r in feasible if (r.backend == record.backend and r.artifact and record.artifact
                        and r.artifact.path == record.artifact.path
                        and all(r.params.get(name) == record.params.get(name) for name in backend.output_params))
                        or (objective == "quality" and lossless(r))]
        free = cores_left_free(self.context)
        if free is not None:  # --under-load: what holds up on the free cores is not screened by what does not
            mine = within_cores(backend, record.params, free)
            feasible = [r for r in feasible if within_cores(backend, r.params, free) == mine]
        if not feasible:
            return None
        return max(feasible, key=lambda r: r.measurement.decode_tps if r.measurement else 0.0)

    def _ruled_out(self, record: TrialRecord, bar: TrialRecord) -> str | None:
        """Why the screen rules ``record`` out, or None when it deserves a full measurement."""
        screen, best = record.measurement, bar.measurement
        assert screen is not None and best is not None
        over = screened_over_budget(screen, self.context.budget, SCREEN_NOISE)
        if over is not None:
            return over
        if self.context.options.objective != "memory" and screen.decode_tps < best.decode_tps * (1 - SCREEN_NOISE):
            quality = "no loss" if lossless(bar) else "same quality"
            return (f"screened out: {screen.decode_tps:.1f} tok/s cannot beat #{bar.number}'s {best.decode_tps:.1f} "
                    f"tok/s ({quality}) beyond the ±{SCREEN_NOISE:.0%} noise")
        return None

    def _scored_out(self, record: TrialRecord, bar: TrialRecord, resolved: ResolvedBackend, artifact: Artifact,
                    params: Params) -> str | None:
        """Why ``record``'s score rules it out against a ``bar`` measured with no loss at all, or None.

        Under the quality objective a configuration beats one with no loss only by tying it on quality (their
        intervals overlapping) and being faster; one whose loss is above zero to its lower bound cannot, whatever
        its speed. So its score is taken before its full measurement, and such a configuration is not measured in
        full: its screen's figures and its score say what it would cost and buy (on 2 cores Q4_0 and Q2_K of
        Gemma 3 270M each saved an 11 s measurement). A score that failed leaves it to the full measurement.
        """
        assert self.quality is not None
        with self.context.phases.timing("quality"):
            record.quality = self.quality.evaluate(resolved, artifact, params)
        kl = record.quality.kl_divergence if record.quality is not None else None
        if kl is None or kl.low <= 0:
            return None
        return (f"scored out: KL {kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}] cannot tie #{bar.number}'s no loss, so "
                f"no speed wins it the quality objective (screened at {record.measurement.decode_tps:.1f} tok/s)"
                if record.measurement is not None else f"scored out: KL {kl.value:.4f} cannot tie #{bar.number}'s no loss")

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
        why = crash_message(backend, signal_name, self.context.hardware, where)
        self.dropped[backend.name] = why
        self.context.reporter.warn(f"backend {backend.name!r} dropped for this run: {why}")


def lossless(record: TrialRecord) -> bool:
    """Was ``record`` measured with no quality loss at all (KL exactly 0 to its upper bound: the reference)?"""
    kl = record.quality.kl_divergence if record.quality is not None else None
    return kl is not None and kl.high == 0


def describe(backend: Backend, params: Params) -> str:
    """The backend's compact label for a configuration; the core's own spelling when the plugin's raises."""
    try:
        return checked(backend.describe(params), str, f"{backend.name}.describe()")
    except Exception:  # noqa: BLE001 - a label is cosmetic
        return Backend.describe(backend, params)
