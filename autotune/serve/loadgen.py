"""A closed-loop load generator for OpenAI-compatible inference servers, on loopback.

``clients`` threads each send one streaming request, wait for its last token, and send the next, until
``requests`` were sent or ``deadline_s`` passed (a request still streaming ``grace_s`` after the deadline is cut
and counted as such), so a run always stops by itself. Each request gets a fresh prompt: the traffic's prompts
in turn, and once they are used up, the same prompts behind a unique first line, so a server's prompt cache
cannot turn a replayed prompt into a free prefill.

Every request keeps its own trace (when it was sent, when each streamed chunk arrived, how many tokens the
server says it generated); ``LoadResult`` reduces the traces to the figures a deployment is judged by:
aggregate throughput, one stream's decode speed after its first token, time to first token (TTFT) and
inter-token latency (ITL) percentiles — each with the number of samples behind it, since a p95 of 8 requests is
their maximum — and goodput under a service-level objective. llama-server's speculative decoding statistics
(``timings.draft_n`` and ``draft_n_accepted``) are summed where the server reports them.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autotune.errors import AutotuneError
from autotune.measurement import percentile
from autotune.serve.traffic import Request, fresh_request


@dataclass(frozen=True)
class LoadPlan:
    """How hard and how long to load a server."""

    clients: int = 1
    requests: int = 8
    max_tokens: int = 64
    deadline_s: float = 120.0
    grace_s: float = 30.0
    """How long a request still streaming at the deadline may go on before it is cut."""
    sampling: dict[str, float | int] = field(default_factory=dict)
    """Sampling settings sent with every request (``temperature``, ``top_p``, ``seed``); empty: the server's."""
    stop_over_itl_ms: float | None = None
    """Stop once the load's p95 inter-token latency is certain to end above this many milliseconds (the requests in
    flight are cut there and kept with the gaps they saw); None: run the load out."""

    def __post_init__(self) -> None:
        if self.clients < 1 or self.requests < 1 or self.max_tokens < 1:
            raise AutotuneError("a load needs at least one client, one request and one token per request")
        if not (self.deadline_s > 0 and self.grace_s >= 0):
            raise AutotuneError("a load's deadline must be positive and its grace not negative")
        if self.stop_over_itl_ms is not None and not (self.stop_over_itl_ms > 0 and math.isfinite(self.stop_over_itl_ms)):
            raise AutotuneError("a load's inter-token latency bound must be a positive number of milliseconds")

    @property
    def most_gaps(self) -> int:
        """The most inter-token gaps the load can produce: every request's tokens but its first."""
        return self.requests * max(0, self.max_tokens - 1)


def gaps_over_to_settle(total: int, q: float = 95) -> int:
    """How many of ``total`` values must lie above a bound for their ``q``-th percentile (``percentile``'s linear
    interpolation) to lie above it too, whatever the others are.

    With ``k`` values above the bound, the sorted values above it start at index ``total - k``; the percentile
    interpolates from index ``floor((total - 1) * q / 100)`` upwards, so it is above the bound once that index is
    one of them. Fewer values in the end (a request cut short) only lower the count needed, so a load that reached
    it is over the bound however it ends.
    """
    if total < 1:
        raise ValueError("no values to take a percentile of")
    return total - math.floor((total - 1) * q / 100)


@dataclass(frozen=True)
class RequestTrace:
    """What one request saw, in seconds from the start of the load."""

    client: int
    sent_s: float
    chunk_s: tuple[float, ...] = ()
    """Arrival of every streamed chunk that carried text."""
    end_s: float | None = None
    tokens: int = 0
    """Generated tokens: the server's usage count where it sends one, else the chunks with text."""
    prompt_tokens: int | None = None
    draft_n: int | None = None
    draft_accepted: int | None = None
    error: str | None = None
    stopped: bool = False
    """Cut when the load stopped over its latency bound (its gaps so far kept, its tokens the chunks it got)."""

    @property
    def ok(self) -> bool:
        """Whether the request completed and produced at least one token."""
        return self.error is None and self.end_s is not None and self.tokens > 0

    @property
    def ttft_s(self) -> float | None:
        """Time to first token (None when no token came)."""
        return self.chunk_s[0] - self.sent_s if self.chunk_s else None

    @property
    def gaps_s(self) -> list[float]:
        """Times between successive text chunks (the inter-token latencies this request saw)."""
        return [b - a for a, b in zip(self.chunk_s, self.chunk_s[1:], strict=False)]


@dataclass(frozen=True)
class Percentile:
    """A percentile and the number of samples it rests on."""

    value: float
    samples: int


@dataclass(frozen=True)
class LoadResult:
    """Every request's trace of one load, and the figures they reduce to."""

    plan: LoadPlan
    traces: tuple[RequestTrace, ...]
    wall_s: float
    """From the first request sent to the last one ended."""
    stopped: str | None = None
    """Why the load stopped before its requests were done (its p95 ITL certain to end over the plan's bound)."""

    @property
    def completed(self) -> list[RequestTrace]:
        """The requests that completed with tokens (cut ones included when the load stopped over its bound)."""
        return [t for t in self.traces if t.ok]

    @property
    def errors(self) -> list[str]:
        """What went wrong, a line per failed request (a request the stop cut before its first token is none)."""
        return [t.error or "no token generated" for t in self.traces if not t.ok and not t.stopped]

    @property
    def tokens(self) -> int:
        """Tokens generated by the completed requests."""
        return sum(t.tokens for t in self.completed)

    @property
    def throughput_tok_s(self) -> float:
        """Aggregate throughput: every completed request's tokens over the wall time (their waits for a first token
        included)."""
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def stream_decode_tok_s(self) -> float | None:
        """Decode speed of one stream: the completed requests' tokens after their first over the time from their
        first token to their last, summed (time to first token left out, so prefill and queueing for a slot do not
        count: what speculative decoding speeds up). None when no request streamed two tokens."""
        streamed = [t for t in self.completed if len(t.chunk_s) > 1 and t.tokens > 1]
        seconds = sum(t.chunk_s[-1] - t.chunk_s[0] for t in streamed)
        return sum(t.tokens - 1 for t in streamed) / seconds if seconds > 0 else None

    def ttft_ms(self, q: float = 95) -> Percentile | None:
        """The ``q``-th percentile of time to first token over completed requests (milliseconds)."""
        values = [t.ttft_s * 1000 for t in self.completed if t.ttft_s is not None]
        return Percentile(percentile(values, q), len(values)) if values else None

    def itl_ms(self, q: float = 95) -> Percentile | None:
        """The ``q``-th percentile of inter-token latency over every gap of every completed request."""
        values = [gap * 1000 for t in self.completed for gap in t.gaps_s]
        return Percentile(percentile(values, q), len(values)) if values else None

    def goodput_tok_s(self, ttft_ms: float | None, itl_ms: float | None) -> float:
        """Throughput counting only requests that met the objective: TTFT and their own p95 ITL within bounds."""
        def met(trace: RequestTrace) -> bool:
            ttft = trace.ttft_s
            if ttft_ms is not None and (ttft is None or ttft * 1000 > ttft_ms):
                return False
            gaps = trace.gaps_s
            return itl_ms is None or not gaps or percentile(gaps, 95) * 1000 <= itl_ms
        good = sum(t.tokens for t in self.completed if met(t))
        return good / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def acceptance(self) -> float | None:
        """Share of drafted tokens the server accepted (None when it drafted none or does not say)."""
        drafted = sum(t.draft_n or 0 for t in self.traces)
        accepted = sum(t.draft_accepted or 0 for t in self.traces)
        return accepted / drafted if drafted else None


MIN_REQUESTS_PER_LOAD = 4
"""Requests in one load at the least; with more clients, two per client."""


def requests_per_load(clients: int) -> int:
    """Requests in one load of ``clients`` closed-loop clients: two per client, at least ``MIN_REQUESTS_PER_LOAD``
    (each client's second request queues behind the others' first, as under steady traffic)."""
    return max(MIN_REQUESTS_PER_LOAD, 2 * clients)


@dataclass
class _Shared:
    """What the client threads share: the next request index and the traces so far."""

    requests: Sequence[Request]
    plan: LoadPlan
    start: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    traces: list[RequestTrace] = field(default_factory=list)
    gaps_over: int = 0
    stopped: str | None = None
    streams: set[socket.socket] = field(default_factory=set)
    """The connections of the requests in flight, shut down when the load stops so no client waits on a read."""

    def take(self) -> int | None:
        with self.lock:
            if self.stopped or self.next_index >= self.plan.requests or self.now() >= self.plan.deadline_s:
                return None
            self.next_index += 1
            return self.next_index - 1

    def gap(self, seconds: float) -> None:
        """Count an inter-token gap against the plan's bound; stop the load once its p95 is certain to be over."""
        bound = self.plan.stop_over_itl_ms
        if bound is None or seconds * 1000 <= bound:
            return
        with self.lock:
            self.gaps_over += 1
            needed = gaps_over_to_settle(max(1, self.plan.most_gaps))
            if self.stopped is None and self.gaps_over >= needed:
                self.stopped = (f"stopped after {self.now():.1f} s: {self.gaps_over} inter-token gaps over "
                                f"{bound:g} ms of at most {self.plan.most_gaps} put its p95 over it")
                for stream in self.streams:
                    try:  # wakes a client blocked reading; the server sees the client gone and frees the slot
                        stream.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def follow(self, stream: socket.socket | None, streaming: bool) -> None:
        """Register (or forget) a request's connection as in flight."""
        if stream is None:
            return
        with self.lock:
            if streaming:
                self.streams.add(stream)
            else:
                self.streams.discard(stream)

    def now(self) -> float:
        return time.monotonic() - self.start

    def keep(self, trace: RequestTrace) -> None:
        with self.lock:
            self.traces.append(trace)


def _chunk_text(chunk: dict[str, Any]) -> str:
    """The text a streamed completion or chat chunk carries ('' for role-only or usage-only chunks)."""
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    text = choice.get("text")
    if text is None and isinstance(choice.get("delta"), dict):
        text = choice["delta"].get("content")
    return text if isinstance(text, str) else ""


def _one_request(url: urllib.parse.SplitResult, request: Request, client: int, shared: _Shared) -> RequestTrace:
    """Send ``request`` and follow its stream to the end, the hard deadline or an error."""
    plan = shared.plan
    path = "/v1/chat/completions" if request.is_chat else "/v1/completions"
    hard_deadline = plan.deadline_s + plan.grace_s
    sent = shared.now()
    chunks: list[float] = []
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    timings: dict[str, Any] = {}
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80,
                                            timeout=max(1.0, hard_deadline - sent))

    def stopped() -> RequestTrace:
        return RequestTrace(client, sent, tuple(chunks), end_s=shared.now(), tokens=len(chunks), stopped=True)

    try:
        connection.connect()
        shared.follow(connection.sock, streaming=True)
        if shared.stopped:
            return stopped()
        connection.request("POST", path, body=json.dumps({**plan.sampling, **request.body(plan.max_tokens)}),
                           headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            detail = response.read(300).decode("utf-8", "replace").strip()
            return RequestTrace(client, sent, error=f"HTTP {response.status}: {detail}")
        while True:
            line = response.readline()
            if shared.stopped:
                return stopped()
            if not line:
                break
            if shared.now() > hard_deadline:
                return RequestTrace(client, sent, tuple(chunks), error="cut at the load's deadline")
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if _chunk_text(chunk):
                chunks.append(shared.now())
                if len(chunks) > 1:
                    shared.gap(chunks[-1] - chunks[-2])
                    if shared.stopped:
                        return stopped()
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                usage_tokens = usage.get("completion_tokens", usage_tokens)
                prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
            if isinstance(chunk.get("timings"), dict):
                timings = chunk["timings"]
    except (OSError, http.client.HTTPException, ValueError) as error:
        if shared.stopped:  # the stop shut this connection down under the read
            return stopped()
        return RequestTrace(client, sent, tuple(chunks), error=f"{type(error).__name__}: {error}")
    finally:
        shared.follow(connection.sock, streaming=False)
        connection.close()
    return RequestTrace(client, sent, tuple(chunks), end_s=shared.now(),
                        tokens=usage_tokens if isinstance(usage_tokens, int) else len(chunks),
                        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
                        draft_n=timings.get("draft_n"), draft_accepted=timings.get("draft_n_accepted"))


def run_load(base_url: str, requests: Sequence[Request], plan: LoadPlan) -> LoadResult:
    """Load the server at ``base_url`` (``http://127.0.0.1:PORT``) with ``plan``; every request's trace."""
    if not requests:
        raise AutotuneError("a load needs at least one prompt")
    url = urllib.parse.urlsplit(base_url)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise AutotuneError(f"the load generator drives servers on loopback over http only, not {base_url!r}")
    shared = _Shared(requests=requests, plan=plan, start=time.monotonic())

    def client(number: int) -> None:
        while (index := shared.take()) is not None:
            shared.keep(_one_request(url, fresh_request(requests, index), number, shared))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(plan.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    traces = tuple(sorted(shared.traces, key=lambda t: t.sent_s))
    ends = [t.end_s for t in traces if t.end_s is not None]
    wall = (max(ends) - traces[0].sent_s) if ends else 0.0
    return LoadResult(plan=plan, traces=traces, wall_s=wall, stopped=shared.stopped)
