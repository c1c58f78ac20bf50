"""What one trial measured, and how raw timings become its figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field


class RunTimings(BaseModel):
    """Raw timings of one timed run: prefill, first token, then each decode step."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt_tokens: int
    prefill_s: float = Field(description="time to evaluate the prompt")
    ttft_s: float = Field(description="prompt evaluation plus sampling the first token")
    token_s: list[float] = Field(description="seconds per decoded token, in order (inter-token latencies)")


class ServedFigures(BaseModel):
    """What a served measurement saw per request (``Measurement.served``): enough to count the requests behind each
    percentile, and to compute goodput under any service-level objective afterwards (the budget is not the
    measurement's business, so the same figures serve every budget)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    clients: int = Field(ge=1, description="clients sending requests at once")
    requests: int = Field(ge=0, description="requests that completed (the TTFT percentiles rest on them)")
    failed: int = Field(default=0, ge=0, description="requests that failed or were cut at the deadline")
    itl_samples: int = Field(ge=0, description="inter-token gaps the ITL percentiles rest on")
    wall_s: float = Field(ge=0, description="seconds the timed loads took, summed")
    request_ttft_ms: list[float] = Field(default_factory=list, description="each completed request's TTFT")
    request_itl_p95_ms: list[float] = Field(default_factory=list,
                                            description="each completed request's own p95 inter-token gap (0: one token)")
    request_tokens: list[int] = Field(default_factory=list, description="tokens each completed request generated")
    drafted: int | None = Field(default=None, description="tokens speculation drafted (None: the server says nothing)")
    accepted: int | None = Field(default=None, description="drafted tokens the model accepted")

    @property
    def throughput_tok_s(self) -> float:
        """Tokens of every completed request over the loads' wall time (goodput's whole; ``decode_tps`` is the
        median of the loads' throughputs instead)."""
        return sum(self.request_tokens) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def acceptance(self) -> float | None:
        """Share of drafted tokens accepted (None when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted and self.accepted is not None else None

    def goodput_tok_s(self, ttft_ms: float | None, itl_ms: float | None) -> float:
        """Tokens per second of the requests that met the objective (TTFT and their own p95 ITL within bounds)."""
        good = sum(tokens for ttft, itl, tokens in zip(self.request_ttft_ms, self.request_itl_p95_ms,
                                                        self.request_tokens, strict=True)
                   if (ttft_ms is None or ttft <= ttft_ms) and (itl_ms is None or itl <= itl_ms))
        return good / self.wall_s if self.wall_s > 0 else 0.0


class Measurement(BaseModel):
    """Figures of one configuration, from a warm-up and several timed runs in one worker process.

    Latencies are inter-token latencies (ITL) while decoding; ``ttft_ms`` is separate.
    ``spread`` is the relative spread of decode speed across runs ((max - min) / median);
    ``extra_runs`` of the ``runs`` were added because the first ones spread too wide (``autotune.plugins.protocol``).
    ``deep_*`` figures are decode latencies measured with the KV cache filled to ``deep_depth``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    load_s: float
    ttft_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    decode_tps: float
    prefill_tps: float
    peak_rss_bytes: int | None = None
    runs: int
    spread: float
    extra_runs: int = Field(default=0, description="timed runs added by the spread check (0 in records from before it)")
    decode_tps_runs: list[float] = Field(default_factory=list)
    deep_depth: int | None = None
    deep_itl_p50_ms: float | None = None
    deep_itl_p95_ms: float | None = None
    context: dict[str, object] = Field(default_factory=dict, description="load average, frequency, ... at measure time")
    served: ServedFigures | None = Field(default=None, description="per-request figures of a served measurement "
                                         "(clients over HTTP): then decode_tps is aggregate throughput, ttft_ms the "
                                         "p95 TTFT and itl_* pooled over every request's gaps")

    @property
    def worst_itl_p95_ms(self) -> float:
        """The p95 latency the budget applies to: the worse of start and depth."""
        return max(self.itl_p95_ms, self.deep_itl_p95_ms or 0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median of a non-empty sequence: 0 when all agree."""
    return (max(values) - min(values)) / statistics.median(values)


def summarize(load_s: float, runs: Sequence[RunTimings], deep: RunTimings | None = None, deep_depth: int | None = None) -> Measurement:
    """Reduce raw runs to a Measurement: medians across runs, percentiles across all decode steps."""
    if not runs:
        raise ValueError("no timed runs to summarize")
    token_times = [t for run in runs for t in run.token_s]
    decode_tps_runs = [len(run.token_s) / sum(run.token_s) for run in runs]
    median_tps = statistics.median(decode_tps_runs)
    measurement = Measurement(
        load_s=load_s,
        ttft_ms=statistics.median(run.ttft_s for run in runs) * 1000,
        itl_p50_ms=percentile(token_times, 50) * 1000,
        itl_p95_ms=percentile(token_times, 95) * 1000,
        decode_tps=median_tps,
        prefill_tps=statistics.median(run.prompt_tokens / run.prefill_s for run in runs),
        runs=len(runs),
        spread=relative_spread(decode_tps_runs),
        decode_tps_runs=decode_tps_runs,
    )
    if deep is not None:
        measurement.deep_depth = deep_depth
        measurement.deep_itl_p50_ms = percentile(deep.token_s, 50) * 1000
        measurement.deep_itl_p95_ms = percentile(deep.token_s, 95) * 1000
    return measurement
