"""The confirmation stage: re-measure the finalists in interleaved rounds and decide with statistics.

On a small machine separate runs of one configuration differ by ±5–10%, far more than the spread
inside one run. So after the search the winner, every feasible configuration within the noise of it,
and the backend's untuned default are measured again in rounds (A B C, B C A, C A B, ...; each
measurement a fresh worker). A winner is declared only when its advantage holds statistically;
otherwise it is a tie, broken by the next criterion (quality loss, then memory).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from autotune.budget import Budget
from autotune.context import RunContext
from autotune.decide.judgment import confirmed_status, eligible, memory_guard
from autotune.decide.stats import bootstrap_interval, compare, paired_ratio, rank_finalists
from autotune.errors import NothingFits
from autotune.measure.artifacts import prepare_artifact
from autotune.measure.busy import Disturbance, QuietWait, disturbed_note
from autotune.measure.trial import measure
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params
from autotune.profile.schema import Confirmation
from autotune.record import TrialRecord, config_key, quality_loss
from autotune.search.sources import ResolvedBackend
from autotune.store.cache import key_digest
from autotune.store.memo import RoundsMemo
from autotune.workload import Workload

NOISE_BAND = 0.15
"""Feasible configurations whose p95 latency is within this fraction of the winner's are re-measured too."""
MAX_CHALLENGERS = 2


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


def pick_challengers(winner: TrialRecord, feasible: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Feasible configurations within the noise of the winner's latency and no worse in quality."""
    w_lat = winner.objectives()[1]
    close = [r for r in feasible if r.key != winner.key and r.objectives()[1] <= w_lat * (1 + NOISE_BAND)
             and quality_loss(r) <= quality_loss(winner) + 1e-12]
    return sorted(close, key=lambda r: r.objectives()[1])[:MAX_CHALLENGERS]


def confirm_finalists(context: RunContext, winner: TrialRecord, feasible: Sequence[TrialRecord],
                      by_name: dict[str, ResolvedBackend], memo: RoundsMemo | None = None,
                      quiet: QuietWait | None = None) -> tuple[TrialRecord, Confirmation, list[str]]:
    """Run the interleaved rounds; return the confirmed winner, its Confirmation and notes.

    The rounds are kept in ``memo`` (the study and the measurement store): a rerun with the same finalists —
    the same command, or another budget that picks them again — reuses them instead of measuring them again.
    A round measured while the machine was busy is measured again once it is quiet (within ``quiet``'s
    allowance); rounds that stay disturbed are named in the notes, with the busy processes.
    """
    budget, workload, hardware, options = context.budget, context.workload, context.hardware, context.options
    reporter = context.reporter
    rounds = options.confirm_rounds  # TuneOptions guarantees at least MIN_CONFIRM_ROUNDS
    r = by_name[winner.backend]
    candidates = [winner, *pick_challengers(winner, feasible)]
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
    baseline_workload = round_workload.model_copy(update={"depth": 0})
    reporter.info(f"confirming {len(finalists)} finalist(s), the untuned default and the rule of thumb in {rounds} "
                  "interleaved rounds")
    memo_key = _rounds_key(everyone, rounds, workload)
    stored = memo.get(memo_key) if memo is not None else None
    if isinstance(stored, dict) and set(stored) == {f.label for f in everyone}:
        for finalist in everyone:
            finalist.decode_tps, finalist.itl_p95_ms, finalist.failures = (
                list(stored[finalist.label][k]) for k in ("decode_tps", "itl_p95_ms", "failures"))
            finalist.disturbed = [d for d in (Disturbance.from_context({"busy": busy}) for busy in
                                              stored[finalist.label].get("disturbed", [])) if d is not None]
        reporter.info(f"reusing the {rounds} confirmation rounds already stored for these finalists")
        return decide(finalists, baseline, budget, options.strict, rounds, thumb)
    rng = random.Random(options.seed)
    offset = rng.randrange(len(everyone))
    for index in range(rounds):
        order = everyone[(index + offset) % len(everyone):] + everyone[:(index + offset) % len(everyone)]
        for finalist in order:
            result = measure(by_name[finalist.backend].backend, finalist.artifact, finalist.params,
                             round_workload if finalist.record is not None else baseline_workload,
                             timeout_s=options.timeout_s, memory_limit_bytes=memory_guard(budget, hardware), quiet=quiet)
            if result.ok:
                m: Measurement = result.value
                finalist.decode_tps.append(m.decode_tps)
                finalist.itl_p95_ms.append(m.worst_itl_p95_ms)
                found = Disturbance.from_context(m.context)
                if found is not None and found.disturbed:
                    finalist.disturbed.append(found)
            else:
                finalist.failures.append(result.error or "failed")
        reporter.info(f"round {index + 1}/{rounds}: " + ", ".join(
            f"{f.label} {f.decode_tps[-1]:.1f} tok/s" for f in order if f.decode_tps))
    if memo is not None:
        memo.put(memo_key, {f.label: {"decode_tps": f.decode_tps, "itl_p95_ms": f.itl_p95_ms,
                                             "failures": f.failures,
                                             "disturbed": [d.as_context() for d in f.disturbed]} for f in everyone})
    return decide(finalists, baseline, budget, options.strict, rounds, thumb)


def _rounds_key(everyone: Sequence[Finalist], rounds: int, workload: Workload) -> str:
    """The study attribute holding the rounds of exactly these configurations, round count and workload."""
    identity = {"configs": sorted(config_key(f.backend, f.params) for f in everyone), "rounds": rounds,
                "workload": workload.model_dump()}
    return "autotune_confirmation_" + key_digest(identity, 16)


def _quality_then_memory(finalist: Finalist) -> tuple[float, float]:
    """The tie-break after speed: quality loss, then peak memory (finalists in a tie are trials, never the baseline)."""
    assert finalist.record is not None
    return quality_loss(finalist.record), finalist.record.objectives()[2]


def decide(finalists: list[Finalist], baseline: Finalist, budget: Budget, strict: bool,
           rounds: int, rule_of_thumb: Finalist | None = None) -> tuple[TrialRecord, Confirmation, list[str]]:
    """Pick the confirmed winner from the rounds (pure logic, tested on synthetic rounds)."""
    # A verdict resting on rounds the load disturbed says so first, naming who was busy.
    everyone = [*finalists, *(f for f in (baseline, rule_of_thumb) if f is not None and f not in finalists)]
    busy = disturbed_note([d for f in everyone for d in f.disturbed], sum(len(f.decode_tps) for f in everyone),
                          "confirmation rounds")
    notes: list[str] = [busy] if busy else []
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
