"""Choosing one model among several tuned candidates.

Each candidate model was searched on its own (its own variants, its own KL from its own source); what fits the
budget was decided there, and its pick is its best configuration within the budget. Between models, KL cannot be
compared (each is measured against another reference), so the choice compares what can be:

- ``quality``: the lowest bits per byte of the evaluation text (tokenizer-independent). Candidates whose bits-per-byte
  intervals overlap the lowest one's are tied; among them the fastest decode wins, and speeds within the
  run-to-run noise (the candidates were measured in separate runs, not interleaved) are tied too, broken by the
  lower peak memory. Without bits per byte (``--no-quality``) the weight bits (parameters × bits per weight) stand
  in for quality: more is better, the field's "largest model that fits" rule.
- ``latency``: the lowest p95 inter-token latency, then the lower bits per byte.
- ``memory``: the lowest peak memory, then the lower bits per byte.
"""

from __future__ import annotations

from collections.abc import Sequence

from autotune.budget import format_bytes
from autotune.decide.selection import RUN_TO_RUN_NOISE
from autotune.options import Objective
from autotune.profile.schema import CandidateBest, CandidateModel, DeploymentProfile

MODEL_CHOICE_NOTES: dict[Objective, str] = {
    "quality": "each model's best configuration within the budget by its own search; among models the lowest bits "
               "per byte of the evaluation text (weight bits, more is better, when quality was not measured); "
               "overlapping intervals are a tie, broken by decode speed, speeds within "
               f"{RUN_TO_RUN_NOISE:.0%} by peak memory",
    "latency": "each model's best configuration within the budget by its own search; among models the lowest p95 "
               "inter-token latency, then bits per byte",
    "memory": "each model's best configuration within the budget by its own search; among models the lowest peak "
              "memory, then bits per byte",
}


def best_of(profile: DeploymentProfile) -> CandidateBest:
    """A tuned model's pick as a candidate: confirmed speed and p95 when the run confirmed them."""
    m, c, q = profile.measured, profile.confirmation, profile.quality
    parameters = profile.model.parameters
    return CandidateBest(
        backend=profile.backend.name, params=profile.params, configuration=_label(profile),
        precision=profile.artifact.label,
        decode_tps=c.decode_tps.value if c is not None else m.decode_tps,
        itl_p95_ms=c.itl_p95_ms.value if c is not None else m.worst_itl_p95_ms,
        peak_rss_bytes=m.peak_rss_bytes,
        bits_per_byte=q.bits_per_byte if q is not None else None,
        kl_divergence=q.kl_divergence if q is not None else None,
        weight_bits=parameters * profile.artifact.bits_per_weight if parameters else None,
        confirmed=c is not None)


def _label(profile: DeploymentProfile) -> str | None:
    """The winner's configuration label, from the profile's trial table."""
    return next((t.configuration for t in profile.trials if t.params == profile.params
                 and t.backend == profile.backend.name), None)


def choose_model(candidates: Sequence[CandidateModel], objective: Objective) -> CandidateModel:
    """The chosen candidate among those with a configuration within the budget (see the module's rule).

    Raises ``ValueError`` when none has one: the caller says why each did not fit.
    """
    fitting = [c for c in candidates if c.best is not None]
    if not fitting:
        raise ValueError("no candidate model has a configuration within the budget")
    if objective == "latency":
        return min(fitting, key=lambda c: (_best(c).itl_p95_ms, _quality_key(c, fitting)))
    if objective == "memory":
        return min(fitting, key=lambda c: (_best(c).peak_rss_bytes or 0, _quality_key(c, fitting)))
    tied = _quality_ties(fitting)
    fastest = max(_best(c).decode_tps for c in tied)
    near = [c for c in tied if _best(c).decode_tps >= fastest * (1 - RUN_TO_RUN_NOISE)]
    return min(near, key=lambda c: (_best(c).peak_rss_bytes or 0, -_best(c).decode_tps))


def _best(candidate: CandidateModel) -> CandidateBest:
    assert candidate.best is not None
    return candidate.best


def _by_bits_per_byte(fitting: Sequence[CandidateModel]) -> bool:
    """Bits per byte decides only when every fitting candidate has it: a measured model is never compared with a
    proxy."""
    return all(_best(c).bits_per_byte is not None for c in fitting)


def _quality_key(candidate: CandidateModel, fitting: Sequence[CandidateModel]) -> float:
    """Smaller is better: bits per byte, or minus the weight bits."""
    best = _best(candidate)
    if _by_bits_per_byte(fitting):
        assert best.bits_per_byte is not None
        return best.bits_per_byte.value
    return -(best.weight_bits or 0.0)


def _quality_ties(fitting: Sequence[CandidateModel]) -> list[CandidateModel]:
    """The candidates whose quality cannot be told from the best one's: bits-per-byte intervals that overlap, or
    equal weight bits."""
    leader = min(fitting, key=lambda c: _quality_key(c, fitting))
    if not _by_bits_per_byte(fitting):
        return [c for c in fitting if _quality_key(c, fitting) == _quality_key(leader, fitting)]
    top = _best(leader).bits_per_byte
    assert top is not None
    return [c for c in fitting if (b := _best(c).bits_per_byte) is not None and b.low <= top.high and top.low <= b.high]


def why_not(candidate: CandidateModel, chosen: CandidateModel, objective: Objective) -> str:
    """One line: why a fitting candidate was not chosen."""
    mine, theirs = _best(candidate), _best(chosen)
    if objective == "latency":
        return f"slower: p95 {mine.itl_p95_ms:.1f} ms against {theirs.itl_p95_ms:.1f} ms"
    if objective == "memory":
        return (f"more memory: {format_bytes(mine.peak_rss_bytes or 0)} against "
                f"{format_bytes(theirs.peak_rss_bytes or 0)}")
    a, b = mine.bits_per_byte, theirs.bits_per_byte
    if a is not None and b is not None:
        if a.low > b.high:
            return f"lower quality: {a.value:.3f} bits per byte [{a.low:.3f}, {a.high:.3f}] against {b.value:.3f}"
        return (f"a quality tie ({a.value:.3f} against {b.value:.3f} bits per byte, intervals overlap) lost on speed "
                f"or memory: {mine.decode_tps:.1f} against {theirs.decode_tps:.1f} tok/s")
    if (mine.weight_bits or 0) < (theirs.weight_bits or 0):
        return "fewer weight bits (quality not measured: parameters × bits per weight stand in)"
    return f"a tie on weight bits lost on speed or memory: {mine.decode_tps:.1f} against {theirs.decode_tps:.1f} tok/s"
