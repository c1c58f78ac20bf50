"""One served measurement: llama-server started with ``server_argv``, loaded by concurrent clients, always stopped.

It runs in the tuner's worker process, like every measurement, and follows the shape of the in-process protocol
(``autotune.plugins.protocol``) with loads in place of runs:

1. start the server on a free loopback port and wait for ``/health`` (``load_s``);
2. a warm-up load, not recorded: one short request per client, so first-call costs (thread pools, kernels for
   both batch shapes, page faults of the weights) stay out of the timed loads;
3. ``workload.runs`` timed loads, one after the other, each ``requests_per_load`` requests from
   ``workload.concurrency`` closed-loop clients, every request with a fresh prompt (the tuning part of the user's
   prompts file, or slices of the evaluation text cut at different places) and bounded in time;
4. the spread check: when the loads' throughputs differ by more than ``SPREAD_LIMIT``, as many loads again
   (while ``LOADS_BUDGET_S``, the time all loads may take, lasts).

With ``workload.stop_over_itl_ms`` (measurements under a competing load), a load stops as soon as its p95
inter-token latency is certain to be over it, and no load follows: the Measurement says so in
``context["stopped"]``, its figures from the requests so far.

Sampling is llama-server's own (temperature 0.8) with a fixed seed, never greedy: small models loop under greedy
decoding, which makes n-gram speculation look far better than it is on real traffic. ``ignore_eos`` keeps every
request at ``gen_tokens``, so configurations are compared on the same work. Figures: ``decode_tps`` is the
aggregate throughput (tokens of all clients per second of wall time), ``ttft_ms`` the p95 time to first token over
requests, ``itl_*`` percentiles over every inter-token gap of every request, ``peak_rss_bytes`` the server's peak
resident memory (its process group; the worker's own Python is not part of the deployment); ``served`` keeps
per-request figures, the counts behind each percentile and speculation's acceptance.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autotune import (
    SPREAD_LIMIT,
    Measurement,
    ServedFigures,
    ServedRound,
    Workload,
    load_eval_text,
    percentile,
    relative_spread,
)
from autotune.errors import AutotuneError
from autotune.serve.loadgen import LoadPlan, LoadResult, requests_per_load, run_load
from autotune.serve.server import RunningServer, free_port, started
from autotune.serve.traffic import Request, fresh_request, text_requests, workload_traffic

from .server_args import server_argv

WARMUP_TOKENS = 8
"""Tokens each warm-up request generates."""
WARMUP_PROMPT_TOKENS = 32
LOADS_BUDGET_S = 150.0
"""Seconds all timed loads of one measurement may take together, so it ends well within the default --timeout
(300 s) with the server's start and the warm-up: a load's deadline is its share of what is left, a request still
streaming is cut ``LOAD_GRACE_S`` after it (and counted as failed), and the spread check adds loads only while
time is left. On a machine too busy to finish, the measurement returns what it saw instead of timing out."""
LOAD_GRACE_S = 10.0
WARMUP_DEADLINE_S = 60.0
READY_TIMEOUT_S = 120.0
SAMPLING: dict[str, float | int] = {"seed": 0, "ignore_eos": True}
"""Sent with every request: a fixed seed over llama-server's default sampling, and always ``gen_tokens`` tokens."""


def tuning_requests(workload: Workload, count: int) -> list[Request]:
    """The prompts timed loads send: the tuning part of the workload's prompts file, else ``count`` slices of the
    evaluation text (the held-out prompts are never sent here: they confirm and verify)."""
    if workload.prompts is not None:
        return list(workload_traffic(workload.prompts).tuning)
    return text_requests(load_eval_text(), workload.prompt_tokens, count)


def measure_server(binary: Path, model_path: Path, params: Mapping[str, Any], workload: Workload,
                   log_dir: Path | None = None) -> Measurement:
    """Start llama-server with ``params``, load it as the module docstring says, stop it; its Measurement."""
    per_load = requests_per_load(workload.concurrency)
    most = per_load * workload.runs * 2  # room for the spread check's loads
    prompts = tuning_requests(workload, most)
    # A prompt file shorter than the loads is sent again behind a unique first line (no cached prefix to reuse).
    fresh = [fresh_request(prompts, index) for index in range(most)]
    with _warm_server(binary, model_path, params, workload, log_dir) as (server, load_s):
        loads: list[LoadResult] = []
        budget_ends = time.perf_counter() + LOADS_BUDGET_S

        def timed_load(left: int) -> None:
            # Each load sends the next slice of the fresh requests: no prompt is sent twice in one measurement.
            start = len(loads) * per_load
            share = max(1.0, (budget_ends - time.perf_counter()) / left - LOAD_GRACE_S)
            plan = LoadPlan(clients=workload.concurrency, requests=per_load, max_tokens=workload.gen_tokens,
                            deadline_s=share, grace_s=LOAD_GRACE_S, sampling=SAMPLING,
                            stop_over_itl_ms=workload.stop_over_itl_ms)
            loads.append(_checked(run_load(server.base_url, fresh[start:start + per_load], plan), "timed load",
                                  server.log_tail()))

        for done in range(workload.runs):
            timed_load(workload.runs - done)
            if loads[-1].stopped:
                break  # certain to be over the bound: more loads would only say it again
        speeds = [load.throughput_tok_s for load in loads]
        added = 0
        if relative_spread(speeds) > SPREAD_LIMIT and not loads[-1].stopped:
            for done in range(workload.runs):
                if time.perf_counter() + 2 * LOAD_GRACE_S > budget_ends:
                    break  # no time left for a meaningful load: the spread stays on record as it is
                timed_load(workload.runs - done)
                added += 1
        server.sample_rss()
        peak = server.peak_rss_bytes
    measurement = summarize_loads(load_s, loads, workload.concurrency)
    measurement.extra_runs = added
    measurement.peak_rss_bytes = peak
    measurement.context["llama_server"] = str(binary)
    return measurement


@contextmanager
def _warm_server(binary: Path, model_path: Path, params: Mapping[str, Any], workload: Workload,
                 log_dir: Path | None = None) -> Iterator[tuple[RunningServer, float]]:
    """llama-server started with ``server_argv`` on a free loopback port and warmed up (one short request per
    client, not recorded), with the seconds it took to answer ``/health``; stopped when the block ends."""
    warmup = [Request(prompt="[warm-up] " + (r.prompt or ""))
              for r in text_requests(load_eval_text(), WARMUP_PROMPT_TOKENS, workload.concurrency)]
    with tempfile.TemporaryDirectory(prefix="autotune-server-") as scratch:
        port = free_port()
        log = (log_dir or Path(scratch)) / f"llama-server-{port}.log"
        started_at = time.perf_counter()
        with started(server_argv(binary, model_path, params, workload, port), port, log,
                     ready_timeout_s=READY_TIMEOUT_S) as server:
            load_s = time.perf_counter() - started_at
            _checked(run_load(server.base_url, warmup, LoadPlan(
                clients=workload.concurrency, requests=len(warmup), max_tokens=WARMUP_TOKENS,
                deadline_s=WARMUP_DEADLINE_S, grace_s=LOAD_GRACE_S, sampling=SAMPLING)), "warm-up", server.log_tail())
            yield server, load_s


@contextmanager
def resident_server(binary: Path, model_path: Path, params: Mapping[str, Any],
                    workload: Workload) -> Iterator[ServedRound]:
    """llama-server started once and warmed up, for the confirmation rounds (``Backend.resident``): each call of
    what it yields sends one round's requests as one load of ``workload.concurrency`` clients (bounded by
    ``LOADS_BUDGET_S``, and stopped once its p95 ITL is certain to end over ``stop_over_itl_ms`` when given) and
    returns that load's Measurement, the server's peak memory so far included."""
    with _warm_server(binary, model_path, params, workload) as (server, load_s):

        def measure_round(requests: Sequence[Request], stop_over_itl_ms: float | None = None) -> Measurement:
            plan = LoadPlan(clients=workload.concurrency, requests=len(requests), max_tokens=workload.gen_tokens,
                            deadline_s=LOADS_BUDGET_S, grace_s=LOAD_GRACE_S, sampling=SAMPLING,
                            stop_over_itl_ms=stop_over_itl_ms)
            load = _checked(run_load(server.base_url, list(requests), plan), "timed load", server.log_tail())
            server.sample_rss()
            measurement = summarize_loads(load_s, [load], workload.concurrency)
            measurement.peak_rss_bytes = server.peak_rss_bytes
            measurement.context["llama_server"] = str(binary)
            measurement.context["resident"] = True
            return measurement

        yield measure_round


def _checked(result: LoadResult, what: str, log_tail: str) -> LoadResult:
    """``result`` when at least one request completed; else an error quoting why (and the server's log)."""
    if not result.completed:
        first = result.errors[0] if result.errors else "no request was sent"
        raise AutotuneError(f"llama-server answered no request of the {what} ({first}); its log ends:\n{log_tail}")
    return result


def summarize_loads(load_s: float, loads: Sequence[LoadResult], clients: int) -> Measurement:
    """Reduce timed loads to a Measurement (the figures the module docstring names)."""
    if not loads:
        raise ValueError("no timed load to summarize")
    traces = [t for load in loads for t in load.completed]
    ttfts = [t.ttft_s * 1000 for t in traces if t.ttft_s is not None]
    gaps = [gap * 1000 for t in traces for gap in t.gaps_s]
    if not gaps:  # one token a request: no inter-token latency to speak of, so the TTFT stands for it
        gaps = ttfts
    speeds = [load.throughput_tok_s for load in loads]
    wall = sum(load.wall_s for load in loads)
    prompt_tokens = sum(t.prompt_tokens or 0 for t in traces)
    drafted = [t.draft_n for load in loads for t in load.traces if t.draft_n is not None]
    accepted = [t.draft_accepted for load in loads for t in load.traces if t.draft_accepted is not None]
    served = ServedFigures(
        clients=clients, requests=len(traces), failed=sum(len(load.errors) for load in loads),
        itl_samples=len(gaps), wall_s=wall,
        request_ttft_ms=[(t.ttft_s or 0.0) * 1000 for t in traces],
        request_itl_p95_ms=[percentile(t.gaps_s, 95) * 1000 if t.gaps_s else 0.0 for t in traces],
        request_tokens=[t.tokens for t in traces],
        drafted=sum(drafted) if drafted else None, accepted=sum(accepted) if accepted else None,
    )
    measurement = Measurement(
        load_s=load_s,
        ttft_ms=percentile(ttfts, 95),
        itl_p50_ms=percentile(gaps, 50),
        itl_p95_ms=percentile(gaps, 95),
        decode_tps=statistics.median(speeds),
        # Prompt tokens per second of time to first token: under concurrency it includes waiting for a slot, so it
        # is what a client sees, not the server's raw prefill speed.
        prefill_tps=prompt_tokens / (sum(ttfts) / 1000) if prompt_tokens and sum(ttfts) > 0 else 0.0,
        runs=len(loads),
        spread=relative_spread(speeds),
        decode_tps_runs=speeds,
        served=served,
    )
    stopped = next((load.stopped for load in loads if load.stopped), None)
    if stopped:  # figures of the requests so far: the load stopped once certain to be over its bound
        measurement.context["stopped"] = stopped
    return measurement
