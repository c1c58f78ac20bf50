"""Every "within budget?" decision in one place: before building, after measuring, after confirming.

The tuner, the search's constraints, the confirmation stage and the nothing-fits explanation all ask
here, so a budget means the same thing at each step:

* ``cap_at_machine``: a memory budget above what the machine lets a process use is capped there;
* ``skip_before_measuring``: a prediction provably over budget (beyond ``PREDICTION_MARGIN``) is skipped;
* ``memory_guard``: how much a measuring worker may hold before it is stopped (above the budget, below the machine);
* ``screened_over_budget``: a screen's short run already over a budget beyond the noise;
* ``violations`` (read by ``record.within``): a measurement's relative excess over each budget (≤ 0 is within) — the
  numbers Optuna gets as constraints and the profile's feasibility;
* ``confirmed_status``: after interleaved rounds, whether the latency interval is within, over or
  straddling the budget (``marginal``), and whether that is eligible (``--strict`` needs "within");
* ``nothing_fits_message``: when nothing passed, which budget failed by how much and what to relax.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from autotune.budget import Budget, format_bytes
from autotune.decide.stats import BudgetStatus, budget_status
from autotune.hardware import Hardware
from autotune.measure.busy import disturbances_of, disturbed_note
from autotune.measurement import Measurement
from autotune.plugins.backend import Prediction
from autotune.profile.schema import Quality
from autotune.record import TrialRecord

PREDICTION_MARGIN = 0.10
"""A configuration is skipped only when its predicted memory exceeds the budget by more than this
fraction: predictions are estimates (their error is reported), so a near miss is measured."""


@dataclass(frozen=True)
class Skip:
    """Why a configuration is not worth building or measuring."""

    cause: str  # "memory" or "latency": which budget the prediction breaks
    reason: str


def cap_at_machine(budget: Budget, hardware: Hardware) -> tuple[Budget, str | None]:
    """The budget capped at the memory this process may use (cgroup limit or RAM), with a warning when it was."""
    limit = hardware.memory.limit_bytes
    if budget.memory_bytes <= limit:
        return budget, None
    why = "its cgroup limit" if hardware.memory.cgroup_limit_bytes == limit else "its memory"
    return budget.model_copy(update={"memory_bytes": limit}), (
        f"the memory budget {format_bytes(budget.memory_bytes)} is above the {format_bytes(limit)} this machine lets "
        f"autotune use ({why}); tuning within {format_bytes(limit)}")


def memory_guard(budget: Budget, hardware: Hardware) -> int:
    """The resident-memory ceiling of a measuring worker: well above the budget (so an overshoot is measured, not
    cut short), never above what one worker may hold on this machine (``Hardware.worker_memory_ceiling``)."""
    wanted = max(int(budget.memory_bytes * 1.5), budget.memory_bytes + 512 * 2**20)
    return min(wanted, hardware.worker_memory_ceiling())


def screened_over_budget(screen: Measurement, budget: Budget, noise: float) -> str | None:
    """Why a screen (one short run at the start of the context) is already over a budget beyond ``noise``, or None.

    Only latency and memory: the deep-context latency, TTFT and quality are not measured by a screen.
    """
    assert screen.peak_rss_bytes is not None
    if screen.itl_p95_ms > budget.latency_ms * (1 + noise):
        return (f"screened out: p95 {screen.itl_p95_ms:.1f} ms at the start of the context already exceeds the "
                f"{budget.latency_ms:g} ms budget beyond the noise")
    if screen.peak_rss_bytes > budget.memory_bytes * (1 + noise):
        return (f"screened out: peak {format_bytes(screen.peak_rss_bytes)} exceeds the "
                f"{format_bytes(budget.memory_bytes)} budget beyond the noise")
    return None


def skip_before_measuring(prediction: Prediction, budget: Budget) -> Skip | None:
    """A ``Skip`` when the prediction provably breaks a budget, None when the configuration must be measured."""
    if prediction.memory_bytes > budget.memory_bytes * (1 + PREDICTION_MARGIN):
        return Skip("memory", f"predicted memory {format_bytes(prediction.memory_bytes)} exceeds the "
                              f"{format_bytes(budget.memory_bytes)} budget; not run")
    bound = prediction.latency_lower_bound_ms
    if bound and bound > budget.latency_ms:
        return Skip("latency", f"predicted latency of at least {bound:.1f} ms exceeds the "
                               f"{budget.latency_ms:g} ms budget; not run")
    return None


def violations(measurement: Measurement, budget: Budget, quality: Quality | None) -> dict[str, float]:
    """Relative excess of a measurement over each budget (≤ 0: within budget)."""
    assert measurement.peak_rss_bytes is not None
    found = {
        "memory": measurement.peak_rss_bytes / budget.memory_bytes - 1,
        "latency": measurement.worst_itl_p95_ms / budget.latency_ms - 1,
    }
    if budget.ttft_ms is not None:
        found["ttft"] = measurement.ttft_ms / budget.ttft_ms - 1
    if budget.max_quality_loss is not None and quality is not None and quality.kl_divergence is not None:
        loss = quality.kl_divergence.value
        if budget.max_quality_loss:
            found["quality"] = loss / budget.max_quality_loss - 1
        else:  # a zero budget admits only a lossless variant
            found["quality"] = 1.0 if loss > 0 else 0.0
    return found


def judged(record: TrialRecord, budget: Budget) -> TrialRecord:
    """``record`` with its violations of ``budget`` (a stored record carries those of the budget it was run for)."""
    if record.status != "measured" or record.measurement is None:
        return record.model_copy(update={"violations": {}})
    return record.model_copy(update={"violations": violations(record.measurement, budget, record.quality)})


def confirmed_status(itl_p95_ms: Sequence[float], budget: Budget) -> BudgetStatus:
    """Whether a finalist's p95 latencies over the confirmation rounds meet the budget: within, over or marginal."""
    return budget_status(itl_p95_ms, budget.latency_ms)


def eligible(status: BudgetStatus, strict: bool) -> bool:
    """May a finalist with this confirmed status win? ``--strict`` refuses a marginal one."""
    return status == "within" or (status == "marginal" and not strict)


def failure_cause(error: str) -> str:
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


RELAX_MARGIN = 1.1
"""A suggested budget is the figure that failed plus this margin, rounded up: it passes the figure it rests on."""


def _megabytes_up(size: float) -> str:
    return f"{math.ceil(size / 1e6)}MB"


def relaxation(measured: Sequence[TrialRecord], budget: Budget) -> str:
    """``Relax to at least --budget 391MB and --latency 48ms``: what lets the measured configuration closest to
    fitting pass, naming only the budgets it breaks, each rounded up so the suggestion passes its own figure."""
    def excess(record: TrialRecord) -> dict[str, float]:
        assert record.measurement is not None
        return violations(record.measurement, budget, record.quality)

    closest = min(measured, key=lambda r: (sum(max(0.0, v) for v in excess(r).values()), r.objectives()))
    m, over = closest.measurement, excess(closest)
    assert m is not None and m.peak_rss_bytes is not None
    wanted = []
    if over["memory"] > 0:
        wanted.append(f"--budget {_megabytes_up(m.peak_rss_bytes * RELAX_MARGIN)}")
    if over["latency"] > 0:
        wanted.append(f"--latency {math.ceil(m.worst_itl_p95_ms * RELAX_MARGIN)}ms")
    if over.get("ttft", 0) > 0:
        wanted.append(f"--ttft {math.ceil(m.ttft_ms * RELAX_MARGIN)}ms")
    quality = closest.quality
    if over.get("quality", 0) > 0 and quality is not None and quality.kl_divergence is not None:
        loss = quality.kl_divergence.value * RELAX_MARGIN
        digits = max(0, 2 - math.floor(math.log10(loss))) if loss > 0 else 0  # three significant digits, up
        wanted.append(f"--max-quality-loss {math.ceil(loss * 10**digits) / 10**digits:g}")
    where = f"(as #{closest.number} {closest.backend} {closest.label or closest.precision or ''} measured)".replace(" )", ")")
    return f"Relax to at least {' and '.join(wanted)} {where}" if wanted else "Nothing measured breaks a budget"


def nothing_fits_message(all_records: Sequence[TrialRecord], budget: Budget,
                         dropped: dict[str, str] | None = None) -> str:
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
        by_memory = min(measured, key=lambda r: r.objectives()[2])
        by_latency = min(measured, key=lambda r: r.objectives()[1])
        m_mem, m_lat = by_memory.measurement, by_latency.measurement
        assert m_mem and m_lat and m_mem.peak_rss_bytes
        lines.append(
            f"Smallest measured memory: {format_bytes(m_mem.peak_rss_bytes)} ({by_memory.backend} "
            f"{by_memory.precision}, {m_mem.peak_rss_bytes / budget.memory_bytes:.1f}× the memory budget)."
        )
        lines.append(
            f"Lowest measured p95 latency: {m_lat.worst_itl_p95_ms:.1f} ms ({by_latency.backend} {by_latency.precision}, "
            f"{m_lat.worst_itl_p95_ms / budget.latency_ms:.1f}× the latency budget)."
        )
        lines.append(f"{relaxation(measured, budget)}, or try a smaller model.")
    skipped = [r for r in all_records if r.status == "predicted-infeasible" and r.prediction is not None]
    # Memory- and latency-skipped configurations apart: each has its own figure and its own suggestion.
    by_memory_skip = [r for r in skipped if r.cause == "memory" or (r.cause is None and "memory" in (r.reason or ""))]
    by_latency_skip = [r for r in skipped if r not in by_memory_skip]
    if by_memory_skip:
        smallest = min(r.prediction.memory_bytes for r in by_memory_skip if r.prediction is not None)
        lines.append(f"{len(by_memory_skip)} configuration(s) were skipped unmeasured for memory: predicted at least "
                     f"{format_bytes(smallest)} against a {format_bytes(budget.memory_bytes)} budget"
                     f" — relax to at least --budget {_megabytes_up(smallest * RELAX_MARGIN)}.")
    bounds = [r.prediction.latency_lower_bound_ms for r in by_latency_skip
              if r.prediction is not None and r.prediction.latency_lower_bound_ms]
    if bounds:
        fastest = min(bounds)
        lines.append(f"{len(by_latency_skip)} configuration(s) were skipped unmeasured for latency: predicted at least "
                     f"{fastest:.1f} ms per token against a {budget.latency_ms:g} ms budget"
                     f" — relax to at least --latency {math.ceil(fastest * RELAX_MARGIN)}ms.")
    # A verdict resting on figures the load made: the user must learn the machine was busy, not that the budget is wrong.
    busy = disturbed_note(disturbances_of([r.measurement.context for r in measured if r.measurement is not None]),
                          len(measured))
    if busy:
        lines.append(busy[0].upper() + busy[1:] + ".")
    return " ".join(lines)
