"""The confirmation stage: re-measure the finalists in interleaved rounds and decide with statistics.

On a small machine separate runs of one configuration differ by ±5–10%, far more than the spread
inside one run. So after the search the winner, every feasible configuration within the noise of it,
and the backend's untuned default are measured again in rounds (A B C, B C A, C A B, ...; each
measurement a fresh worker). A winner is declared only when its advantage holds statistically;
otherwise it is a tie, broken by the next criterion (quality loss, then memory).

The rounds are sequential: from ``EARLIEST_STOP`` rounds on, they stop as soon as the decision is settled
(``stop_reason``), and never run more than ``--confirm-rounds``. A tie is settled when no finalist can still
win against another whatever the remaining rounds measure (``can_still_win``); a win before the last round
needs a stricter effect (``EARLY_EFFECT``, beyond the run-to-run noise in every round) than one at the last,
because looking after every round gives chance more occasions to look like a win.

A server backend's finalists and baselines are kept running through the rounds when they fit the memory budget
together (``autotune.search.resident``): each round loads every server once, in the round's order, all with the
same requests (the workload's held-out prompts, marked anew each round), as ``bench/serving.py`` measures. When
only each alone fits, each runs in turn: started and warmed up before its loads of a round, stopped after them.

The machine as it will be: the chosen configuration and the rule of thumb are also measured once with a
synthetic competing load (``--busy-share`` cores kept busy by ``autotune.measure.competing_load``); with
``--under-load`` every configuration is measured both ways in every round and the choice is made on the busy
figures. A configuration whose figures collapse under the load is named in ``Confirmation.load_warnings``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from autotune.budget import Budget
from autotune.context import RunContext
from autotune.decide.judgment import confirmed_status, eligible, memory_guard
from autotune.decide.stats import bootstrap_interval, can_still_win, compare, paired_ratio, rank_finalists
from autotune.errors import NothingFits
from autotune.measure.artifacts import prepare_artifact
from autotune.measure.busy import MAX_WAIT_PER_MEASUREMENT_S, Disturbance, QuietWait, disturbed_note, measured_cores
from autotune.measure.competing_load import competing_load, plan_load
from autotune.measure.trial import measure
from autotune.measure.worker import WorkerResult
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params, within_cores
from autotune.profile.schema import Confirmation, ConfirmedFigures
from autotune.record import TrialRecord, config_key, quality_loss
from autotune.search.resident import Candidate, ResidentRounds
from autotune.search.sources import ResolvedBackend, cores_left_free
from autotune.store.cache import key_digest
from autotune.store.memo import RoundsMemo
from autotune.workload import Workload

NOISE_BAND = 0.15
"""Feasible configurations whose p95 latency is within this fraction of the winner's are re-measured too."""
MAX_CHALLENGERS = 2
EARLIEST_STOP = 3
"""The rounds may stop after this many at the earliest: fewer say nothing about the run-to-run noise."""
EARLY_EFFECT = 0.10
"""Before the last round a win (between finalists, or against the rule of thumb) settles the rounds only when it
exceeds this in every round so far: beyond the ±5–10% by which separate runs differ here."""
EARLY_MARGIN = 0.10
"""Before the last round a finalist's latency status is settled only when its p95 interval is this far from the
budget (below it for "within", above for "over"); an interval near or across the budget gets every round."""
BASELINE_GEN_TOKENS = 32
"""Tokens the baselines' measurements generate (the screens' length)."""
BUSY_GEN_TOKENS = 16
"""Tokens a single measurement under the competing load generates: it tells whether a configuration holds up or
collapses, and a collapsed one decodes at 1.5-9 tok/s here (16 fewer tokens: up to 11 s less)."""
COLLAPSE_SHARE = 0.5
"""Under the competing load, a configuration keeping less than this share of its quiet decode speed collapses."""


@dataclass
class Finalist:
    """One configuration in the confirmation rounds."""

    label: str
    backend: str
    params: Params
    artifact: Artifact
    record: TrialRecord | None  # None for the untuned baseline when it was never a trial
    decode_tps: list[float] = field(default_factory=list)
    itl_p95_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    disturbed: list[Disturbance] = field(default_factory=list)
    """Rounds measured while the machine was busy (still so after waiting for a quiet moment)."""
    busy_decode_tps: list[float] = field(default_factory=list)
    """The same figures measured under the synthetic competing load (``--busy-share``)."""
    busy_itl_p95_ms: list[float] = field(default_factory=list)
    busy_failures: list[str] = field(default_factory=list)
    busy_stopped: int = 0
    """Busy served loads stopped once their p95 was certain to be over the budget (their figures are partial)."""

    def under_load(self) -> Finalist:
        """This finalist with its busy figures in place of its quiet ones (and the quiet ones kept as busy)."""
        return replace(self, decode_tps=self.busy_decode_tps, itl_p95_ms=self.busy_itl_p95_ms,
                       failures=self.busy_failures, busy_decode_tps=self.decode_tps,
                       busy_itl_p95_ms=self.itl_p95_ms, busy_failures=self.failures)


def pick_challengers(winner: TrialRecord, feasible: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Feasible configurations within the noise of the winner's latency and no worse in quality."""
    w_lat = winner.objectives()[1]
    close = [r for r in feasible if r.key != winner.key and r.objectives()[1] <= w_lat * (1 + NOISE_BAND)
             and quality_loss(r) <= quality_loss(winner) + 1e-12]
    return sorted(close, key=lambda r: r.objectives()[1])[:MAX_CHALLENGERS]


def best_on_free_cores(winner: TrialRecord, feasible: Sequence[TrialRecord], free: int,
                       by_name: dict[str, ResolvedBackend]) -> TrialRecord | None:
    """The feasible configuration within ``free`` cores with the lowest p95, no worse in quality than the winner
    (as challengers are), or None."""
    within = [r for r in feasible if r.key != winner.key and quality_loss(r) <= quality_loss(winner) + 1e-12
              and within_cores(by_name[r.backend].backend, r.params, free)]
    return min(within, key=lambda r: r.objectives()[1], default=None)


def confirm_finalists(context: RunContext, winner: TrialRecord, feasible: Sequence[TrialRecord],
                      by_name: dict[str, ResolvedBackend], memo: RoundsMemo | None = None,
                      quiet: QuietWait | None = None) -> tuple[TrialRecord, Confirmation, list[str]]:
    """Run the interleaved rounds; return the confirmed winner, its Confirmation and notes.

    The rounds stop once the decision is settled (``stop_reason``), after ``--confirm-rounds`` at most. Then the
    chosen configuration and the rule of thumb are measured once under the competing load (``--busy-share``);
    with ``--under-load`` every configuration is measured under it in every round, and the choice rests on those.

    The rounds are kept in ``memo`` (the study and the measurement store): a rerun with the same finalists —
    the same command, or another budget that picks them again — reuses them instead of measuring them again.
    A round measured while the machine was busy is measured again once it is quiet (within ``quiet``'s
    allowance); rounds that stay disturbed are named in the notes, with the busy processes.
    """
    budget, workload, hardware, options = context.budget, context.workload, context.hardware, context.options
    reporter = context.reporter
    most = options.confirm_rounds  # TuneOptions guarantees at least MIN_CONFIRM_ROUNDS
    share, under_load = options.busy_share, options.under_load
    cores = len(measured_cores())
    if share > cores:  # the command line refuses it; a library caller is told and gets every core
        reporter.warn(f"a competing load of {share:g} cores is more than the {cores} autotune may use; {cores} are kept busy")
        share = float(cores)
    load = plan_load(share) if share > 0 else None
    r = by_name[winner.backend]
    candidates = [winner, *pick_challengers(winner, feasible)]
    free = cores_left_free(context) if load is not None else None
    if free is not None:
        # Chosen on busy figures, the fastest configuration on the cores the load leaves free competes too: quietly
        # slower than the winner, it can be the one that holds up (issue 19: -t 1 kept 5.5x the speed of -t 2).
        spare = best_on_free_cores(winner, [f for f in feasible if f.key not in {c.key for c in candidates}], free, by_name)
        if spare is not None and not any(within_cores(by_name[c.backend].backend, c.params, free) for c in candidates):
            candidates.append(spare)
    finalists = [Finalist(label=f"#{c.number}", backend=c.backend, params=c.params,
                          artifact=prepare_artifact(by_name[c.backend].backend, by_name[c.backend].source, c.params)[0],
                          record=c) for c in candidates]
    everyone = list(finalists)

    def baseline_for(label: str, params: Params) -> Finalist:
        """A finalist already measuring ``params``, or a new baseline entry for it."""
        found = next((f for f in everyone if config_key(f.backend, f.params) == config_key(r.backend.name, params)), None)
        if found is None:
            found = Finalist(label=label, backend=r.backend.name, params=params,
                             artifact=prepare_artifact(r.backend, r.source, params)[0], record=None)
            everyone.append(found)
        return found

    try:
        baseline = baseline_for("untuned", r.backend.untuned_params(r.source, hardware, workload))
    except Exception as error:  # noqa: BLE001 - a plugin's bug costs the comparison, never the answer
        reporter.warn(f"backend {r.backend.name!r} could not give its untuned default ({error!r}); the winner is "
                      "compared with itself")
        baseline = finalists[0]
    try:
        thumb_params = r.backend.rule_of_thumb(r.source, hardware, workload)
        thumb = baseline_for("rule of thumb", thumb_params) if thumb_params is not None else None
    except Exception as error:  # noqa: BLE001
        reporter.warn(f"backend {r.backend.name!r} could not give its rule of thumb ({error!r}); not compared")
        thumb = None
    # One timed run per round: the rounds are the repetitions; a fresh worker each time.
    round_workload = workload.model_copy(update={"runs": 1})
    # Baselines only lend their decode speed at the start of the context to the ratios: their latency at depth
    # decides nothing, and its long fill (1984 tokens, up to 12 s on one thread here) would dominate the rounds.
    # They decode fewer tokens (``BASELINE_GEN_TOKENS``): a decode speed over 32 tokens is as good a ratio's term as
    # over 64 (the weights, not the few more cached positions, set a step's time), and the untuned default on one
    # of two cores took 1.2 s less per round. The single measurement with the competing load, which only tells
    # whether a configuration holds up or collapses, decodes fewer still (``BUSY_GEN_TOKENS``).
    baseline_workload = round_workload.model_copy(update={
        "depth": 0, "gen_tokens": max(2, min(workload.gen_tokens, BASELINE_GEN_TOKENS))})
    busy_workload = baseline_workload.model_copy(update={"gen_tokens": max(2, min(workload.gen_tokens, BUSY_GEN_TOKENS))})

    resident = ResidentRounds(workload, reporter)

    def resident_candidate(finalist: Finalist) -> Candidate:
        """What keeping ``finalist`` running takes: its measured peak memory, else its backend's prediction."""
        backend = by_name[finalist.backend]
        measured = finalist.record.measurement if finalist.record is not None else None
        memory = measured.peak_rss_bytes if measured is not None and measured.peak_rss_bytes else None
        if memory is None:
            try:
                memory = backend.backend.predict(backend.source, finalist.params, workload, hardware).memory_bytes
            except Exception:  # noqa: BLE001 - unknown: count it as large as the winner's
                memory = (winner.measurement.peak_rss_bytes if winner.measurement else None) or budget.memory_bytes
        return Candidate(key=id(finalist), backend=backend.backend, artifact=finalist.artifact,
                         params=finalist.params, memory_bytes=int(memory))

    def measure_into(finalist: Finalist, busy: bool, slot: int) -> None:
        """One measurement of ``finalist``, quiet or under the competing load: a load of its resident server with
        the requests of ``slot`` when the rounds keep servers running, else a fresh worker's."""
        # A single busy measurement is taken at the start of the context: a configuration that collapses under the
        # load would spend minutes in the deep fill, and its decode speed and p95 there already tell. Under
        # --under-load the budget applies to the busy figures, so they are measured as the quiet ones are.
        deep = finalist.record is not None and (not busy or under_load)
        measured = round_workload if deep else busy_workload if busy and not under_load else baseline_workload
        if busy and by_name[finalist.backend].backend.serves:  # stopped once certain to be over the budget
            measured = measured.model_copy(update={"stop_over_itl_ms": budget.latency_ms})
        def run() -> WorkerResult:
            if id(finalist) in resident:
                # A load under the competing load stops once its p95 is certain to be over the budget: a collapsing
                # server streams a token every second or two, and ran its whole 150 s bound to show what its
                # first dozen gaps over the budget prove (one client: 14 of at most 252). Quiet loads run out.
                return resident.measure(id(finalist), slot, stop_over_itl_ms=measured.stop_over_itl_ms)
            return measure(by_name[finalist.backend].backend, finalist.artifact, finalist.params, measured,
                           timeout_s=options.timeout_s, memory_limit_bytes=memory_guard(budget, hardware), quiet=quiet)
        if id(finalist) in resident:  # a server kept running in turn starts now, before any competing load
            resident.ready(id(finalist))
        if busy and by_name[finalist.backend].backend.measures_this_machine:  # a replay's figures are not this machine's
            # The load outlives no measurement: stopped when it ends; at worst a measurement, a wait and another.
            with competing_load(share, max_s=2 * options.timeout_s + MAX_WAIT_PER_MEASUREMENT_S):
                result = run()
        else:
            result = run()
        tps, p95, failures = ((finalist.busy_decode_tps, finalist.busy_itl_p95_ms, finalist.busy_failures) if busy
                              else (finalist.decode_tps, finalist.itl_p95_ms, finalist.failures))
        if result.ok:
            m: Measurement = result.value
            tps.append(m.decode_tps)
            p95.append(m.worst_itl_p95_ms)
            if busy and m.context.get("stopped"):
                finalist.busy_stopped += 1
            found = Disturbance.from_context(m.context)
            if found is not None and found.disturbed:
                finalist.disturbed.append(found)
        else:
            failures.append(result.error or "failed")

    def judged(group: Sequence[Finalist]) -> list[Finalist]:
        """The figures the choice rests on: the busy ones under ``--under-load``."""
        return [f.under_load() for f in group] if under_load else list(group)

    def verdict(done: int, stopped: str) -> tuple[TrialRecord, Confirmation, list[str]]:
        views = {id(f): v for f, v in zip(everyone, judged(everyone), strict=True)}
        try:
            return decide([views[id(f)] for f in finalists], views[id(baseline)], budget, options.strict, done,
                          views[id(thumb)] if thumb is not None else None, stopped=stopped, max_rounds=most)
        except NothingFits as error:
            if not under_load or load is None:
                raise
            raise NothingFits(f"with {load.describe()} (--under-load): {error}; or drop --under-load to choose on "
                              "figures from a quiet machine") from None

    both = f", each also with {load.describe()}" if under_load and load is not None else ""
    reporter.info(f"confirming {len(finalists)} finalist(s), the untuned default and the rule of thumb in up to {most} "
                  f"interleaved rounds{both} (they stop once the decision is settled)")
    served = any(by_name[f.backend].backend.serves for f in everyone)
    memo_key = _rounds_key(everyone, most, workload, share, under_load, budget.latency_ms if served else None)
    stored = memo.get(memo_key) if memo is not None else None
    with resident:  # the resident servers, if the rounds start any, run while the rounds and busy measurements do
        if _restore(stored, everyone):
            assert isinstance(stored, dict)
            done, stopped = int(stored["rounds"]), str(stored["stopped"])
            reporter.info(f"reusing the {done} confirmation rounds already stored for these finalists")
        else:
            rng = random.Random(options.seed)
            offset = rng.randrange(len(everyone))
            done, stopped = 0, f"all {most} rounds ran: the decision was not settled earlier"
            resident.start([resident_candidate(f) for f in everyone], budget)
            for index in range(most):
                order = everyone[(index + offset) % len(everyone):] + everyone[:(index + offset) % len(everyone)]
                for finalist in order:
                    measure_into(finalist, busy=False, slot=2 * index)
                    if under_load and load is not None:
                        measure_into(finalist, busy=True, slot=2 * index + 1)
                done = index + 1
                reporter.info(f"round {done}/{most}: " + ", ".join(
                    f"{f.label} {f.decode_tps[-1]:.1f} tok/s" + (f" ({f.busy_decode_tps[-1]:.1f} busy)"
                                                                if under_load and f.busy_decode_tps else "")
                    for f in order if f.decode_tps))
                views = {id(f): v for f, v in zip(everyone, judged(everyone), strict=True)}
                why = stop_reason([views[id(f)] for f in finalists], views[id(baseline)], budget, options.strict, done,
                                  most, views[id(thumb)] if thumb is not None else None) if done < most else None
                if why is not None:
                    stopped = f"{done} of at most {most} rounds: {why}"
                    reporter.info(f"confirmation stopped after {stopped}")
                    break
        record, confirmation, notes = verdict(done, stopped)
        if load is not None and not under_load:
            # The machine as it will be, by default for what is presented only: the answer and the rule of thumb.
            chosen = next(f for f in finalists if f.record is record)
            for finalist in [chosen] if thumb is None or thumb is chosen else [chosen, thumb]:
                if not finalist.busy_decode_tps and not finalist.busy_failures:
                    reporter.info(f"measuring {finalist.label} with {load.describe()}")
                    measure_into(finalist, busy=True, slot=2 * most + 1)
    if memo is not None:
        memo.put(memo_key, {"rounds": done, "stopped": stopped, "finalists": {f.label: {
            "decode_tps": f.decode_tps, "itl_p95_ms": f.itl_p95_ms, "failures": f.failures,
            "busy_decode_tps": f.busy_decode_tps, "busy_itl_p95_ms": f.busy_itl_p95_ms, "busy_failures": f.busy_failures,
            "busy_stopped": f.busy_stopped, "disturbed": [d.as_context() for d in f.disturbed]} for f in everyone}})
    figures, warnings = load_figures(everyone, record, thumb, baseline, budget, load.describe() if load else None,
                                     under_load)
    confirmation = confirmation.model_copy(update={
        "busy_share": share if load is not None else None, "under_load": under_load and load is not None,
        "figures": figures, "load_warnings": warnings})
    return record, confirmation, [*notes, *warnings]


def _restore(stored: object, everyone: Sequence[Finalist]) -> bool:
    """Fill ``everyone``'s figures from stored rounds; False when ``stored`` is not rounds of exactly them."""
    if not isinstance(stored, dict) or not isinstance(stored.get("finalists"), dict):
        return False
    kept = stored["finalists"]
    if set(kept) != {f.label for f in everyone} or not isinstance(stored.get("rounds"), int):
        return False
    for finalist in everyone:
        figures = kept[finalist.label]
        finalist.decode_tps, finalist.itl_p95_ms, finalist.failures = (
            list(figures[k]) for k in ("decode_tps", "itl_p95_ms", "failures"))
        finalist.busy_decode_tps, finalist.busy_itl_p95_ms, finalist.busy_failures = (
            list(figures.get(k, [])) for k in ("busy_decode_tps", "busy_itl_p95_ms", "busy_failures"))
        finalist.busy_stopped = int(figures.get("busy_stopped", 0))
        finalist.disturbed = [d for d in (Disturbance.from_context({"busy": busy}) for busy in
                                          figures.get("disturbed", [])) if d is not None]
    return True


def _rounds_key(everyone: Sequence[Finalist], rounds: int, workload: Workload, busy_share: float,
                under_load: bool, stop_over_itl_ms: float | None) -> str:
    """The study attribute holding the rounds of exactly these configurations, round limit, workload and load
    (and the bound busy served loads stop at, where there are any: their figures depend on it)."""
    identity = {"configs": sorted(config_key(f.backend, f.params) for f in everyone), "rounds": rounds,
                "workload": workload.model_dump(), "busy_share": busy_share, "under_load": under_load,
                # rounds that stop when settled, with busy figures, baselines on 32 tokens, busy ones on 16
                "sequential": 4}
    if stop_over_itl_ms is not None and busy_share > 0:
        identity["stop_over_itl_ms"] = stop_over_itl_ms
    return "autotune_confirmation_" + key_digest(identity, 16)


def _settled_pair(a: Finalist, b: Finalist, most: int, min_effect: float = 0.0) -> str | None:
    """``"tie"`` when neither of two can still win over the other, ``"win"`` when one wins beyond ``EARLY_EFFECT``
    in the rounds so far, None when the remaining rounds could still change their verdict."""
    if not can_still_win(a.decode_tps, b.decode_tps, most) and not can_still_win(b.decode_tps, a.decode_tps, most):
        return "tie"
    if compare(a.decode_tps, b.decode_tps, higher_is_better=True, min_effect=max(min_effect, EARLY_EFFECT)).verdict != "tie":
        return "win"
    return None


def stop_reason(finalists: list[Finalist], baseline: Finalist, budget: Budget, strict: bool, done: int, most: int,
                rule_of_thumb: Finalist | None = None) -> str | None:
    """Why the rounds may stop after ``done`` of at most ``most``, or None to measure another (pure logic).

    Settled means: every finalist's p95 interval is clear of the latency budget by ``EARLY_MARGIN`` (its
    status cannot plausibly change); every pair of finalists within the budget is a tie that no remaining
    round can break, or a win beyond ``EARLY_EFFECT`` in every round so far; and the chosen one against the
    rule of thumb likewise. The untuned default decides nothing (its speed-up is reported with its interval).
    """
    if done < EARLIEST_STOP or done >= most:
        return None
    complete = [f for f in finalists if len(f.decode_tps) == done]
    if not complete:
        return "every finalist failed"
    limit = budget.latency_ms
    for f in complete:
        p95 = bootstrap_interval(f.itl_p95_ms)
        if not (p95.high * (1 + EARLY_MARGIN) <= limit or p95.low >= limit * (1 + EARLY_MARGIN)):
            return None
    contenders = [f for f in complete if eligible(confirmed_status(f.itl_p95_ms, budget), strict)]
    if not contenders:
        return f"every finalist's p95 latency is over the {limit:g} ms budget beyond the noise"
    pairs = [_settled_pair(a, b, most) for a, b in itertools.combinations(contenders, 2)]
    if None in pairs:
        return None
    chosen_record = decide(finalists, baseline, budget, strict, done, rule_of_thumb)[0]
    chosen = next(f for f in contenders if f.record is chosen_record)
    against_thumb = None
    if rule_of_thumb is not None and rule_of_thumb is not chosen and len(rule_of_thumb.decode_tps) == done:
        against_thumb = _settled_pair(chosen, rule_of_thumb, most, min_effect=0.02)
        if against_thumb is None:
            return None
    if len(contenders) == 1:
        why = "one finalist within the budget"
    elif "win" not in pairs:
        why = "every pair of finalists has won rounds from each other, a tie whatever the remaining rounds measure"
    else:
        why = (f"each finalist beats another by more than {EARLY_EFFECT:.0%} in every round so far, or ties with it "
               "whatever the remaining rounds measure")
    if against_thumb == "tie":
        why += "; a tie with the rule of thumb that cannot change"
    elif against_thumb == "win":
        why += f"; the rule of thumb differs by more than {EARLY_EFFECT:.0%} in every round"
    return why + f"; every p95 latency is clear of the budget by more than {EARLY_MARGIN:.0%}"


def load_figures(everyone: Sequence[Finalist], chosen: TrialRecord, rule_of_thumb: Finalist | None, baseline: Finalist,
                 budget: Budget, load: str | None, under_load: bool = False) -> tuple[list[ConfirmedFigures], list[str]]:
    """Each configuration's figures quiet and busy, and a warning for each one that collapses under the load.

    Collapsing: keeping less than ``COLLAPSE_SHARE`` of its quiet decode speed, or a busy p95 over the latency
    budget (medians over the rounds each was measured in).
    """
    figures: list[ConfirmedFigures] = []
    warnings: list[str] = []
    for f in everyone:
        quiet_tps = bootstrap_interval(f.decode_tps) if f.decode_tps else None
        busy_tps = bootstrap_interval(f.busy_decode_tps) if f.busy_decode_tps else None
        busy_p95 = bootstrap_interval(f.busy_itl_p95_ms) if f.busy_itl_p95_ms else None
        why = []
        if quiet_tps is not None and busy_tps is not None and busy_tps.value < COLLAPSE_SHARE * quiet_tps.value:
            why.append(f"{busy_tps.value:.1f} tok/s against {quiet_tps.value:.1f} quiet "
                       f"({busy_tps.value / quiet_tps.value:.0%})")
        if busy_p95 is not None and busy_p95.value > budget.latency_ms:
            why.append(f"p95 {busy_p95.value:.1f} ms over the {budget.latency_ms:g} ms budget")
        if why and f.busy_stopped:
            why.append(f"{f.busy_stopped} of its {len(f.busy_decode_tps)} busy load(s) stopped once certain to be "
                       "over the budget, their figures from the requests so far")
        figures.append(ConfirmedFigures(
            label=f.label, params=f.params, chosen=f.record is chosen, rounds=len(f.decode_tps), decode_tps=quiet_tps,
            itl_p95_ms=bootstrap_interval(f.itl_p95_ms) if f.itl_p95_ms else None, busy_rounds=len(f.busy_decode_tps),
            busy_decode_tps=busy_tps, busy_itl_p95_ms=busy_p95, collapses=bool(why)))
        if why:
            role = ("the chosen configuration" if f.record is chosen else "the rule of thumb" if f is rule_of_thumb
                    else "the untuned default" if f is baseline else "finalist")
            advice = " (--under-load chooses on figures measured with it)" if f.record is chosen and not under_load else ""
            name = role if (f is rule_of_thumb or f is baseline) and f.record is not chosen else f"{role} {f.label}"
            warnings.append(f"{name} collapses with {load}: " + "; ".join(why) + advice)
    return figures, warnings


def _quality_then_memory(finalist: Finalist) -> tuple[float, float]:
    """The tie-break after speed: quality loss, then peak memory (finalists in a tie are trials, never the baseline)."""
    assert finalist.record is not None
    return quality_loss(finalist.record), finalist.record.objectives()[2]


def decide(finalists: list[Finalist], baseline: Finalist, budget: Budget, strict: bool,
           rounds: int, rule_of_thumb: Finalist | None = None, stopped: str | None = None,
           max_rounds: int | None = None) -> tuple[TrialRecord, Confirmation, list[str]]:
    """Pick the confirmed winner from ``rounds`` rounds (pure logic, tested on synthetic rounds).

    ``stopped`` says how many rounds ran of at most ``max_rounds`` and why; it opens the notes.
    """
    # A verdict resting on rounds the load disturbed says so first, naming who was busy.
    everyone = [*finalists, *(f for f in (baseline, rule_of_thumb) if f is not None and f not in finalists)]
    busy = disturbed_note([d for f in everyone for d in f.disturbed],
                          sum(len(f.decode_tps) + len(f.busy_decode_tps) for f in everyone), "confirmation rounds")
    notes: list[str] = [f"confirmation: {stopped}"] if stopped else []
    if busy:
        notes.append(busy)
    complete = [f for f in finalists if len(f.decode_tps) == rounds]
    for f in finalists:
        if f not in complete:
            notes.append(f"{f.label} dropped from confirmation: {len(f.failures)} failed round(s): {f.failures[:1]}")
    if not complete:
        raise NothingFits("every finalist failed during confirmation; see the notes and rerun" + (f". {busy}" if busy else ""))
    status = {f.label: confirmed_status(f.itl_p95_ms, budget) for f in complete}
    contenders = [f for f in complete if eligible(status[f.label], strict)]
    if not contenders:
        worst = "marginal or over" if strict else "over"
        raise NothingFits(
            f"no finalist's confirmed p95 latency is within the {budget.latency_ms:g} ms budget ({worst} in the "
            f"interleaved rounds: " + ", ".join(f"{f.label} median {sorted(f.itl_p95_ms)[len(f.itl_p95_ms) // 2]:.1f} ms"
                                               for f in complete) + "); relax --latency" + (" or drop --strict" if strict else "")
            + (f". {busy[0].upper()}{busy[1:]}" if busy else "")
        )
    ranking = rank_finalists({f.label: f.decode_tps for f in contenders}, higher_is_better=True)
    best_label = ranking[0].name
    tied_labels = [r.name for r in ranking[1:] if r.tied_with_best]
    by_label = {f.label: f for f in contenders}
    if len(contenders) == 1:
        verdict = "single finalist"
        chosen = by_label[best_label]
    elif tied_labels:
        verdict = "tie"
        pool = [by_label[best_label], *(by_label[label] for label in tied_labels)]
        # Tie on speed: the next criteria decide (quality loss, then memory).
        chosen = min(pool, key=_quality_then_memory)
        notes.append(f"speed tie between {', '.join(f.label for f in pool)} within the noise; chose {chosen.label} by "
                     "quality loss, then memory")
    else:
        verdict = "winner"
        chosen = by_label[best_label]
    assert chosen.record is not None
    speedup = None
    if baseline is not chosen and len(baseline.decode_tps) == rounds:
        speedup = paired_ratio(chosen.decode_tps, baseline.decode_tps)
    versus, over_thumb = None, None
    if rule_of_thumb is chosen:
        versus = "same"
    elif rule_of_thumb is not None and len(rule_of_thumb.decode_tps) == rounds:
        # The same test as between finalists: a win needs the ratio's interval beyond 2% and the sign test.
        comparison = compare(chosen.decode_tps, rule_of_thumb.decode_tps, higher_is_better=True, min_effect=0.02)
        over_thumb = comparison.ratio
        versus = {"a": "faster", "b": "slower", "tie": "tie"}[comparison.verdict]
        if versus == "tie":
            notes.append("tuning tied with the rule of thumb (every physical core, runtime defaults) inside the noise: "
                         f"{over_thumb.value:.2f}× [{over_thumb.low:.2f}, {over_thumb.high:.2f}]")
    confirmation = Confirmation(
        rounds=rounds,
        max_rounds=max_rounds,
        decode_tps=bootstrap_interval(chosen.decode_tps),
        itl_p95_ms=bootstrap_interval(chosen.itl_p95_ms),
        verdict=verdict,
        marginal=status[chosen.label] == "marginal",
        speedup_over_untuned=speedup,
        untuned_params=baseline.params,
        speedup_over_rule_of_thumb=over_thumb,
        rule_of_thumb_params=rule_of_thumb.params if rule_of_thumb is not None else None,
        versus_rule_of_thumb=versus,
        notes=notes,
    )
    return chosen.record, confirmation, notes
