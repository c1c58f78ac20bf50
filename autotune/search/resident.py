"""Served finalists kept running through the confirmation rounds, loaded in turn with the same requests.

A server backend's rounds compare deployments under load (one client's too: a served deployment is what the
user will run, whether or not the workload is served). Started afresh for every measurement, each round
would also measure a server's start and first requests; kept running (``Backend.resident``), each round is one
load of each deployment, in the rounds' rotating order, every deployment of a round sent the same requests
(the workload's held-out prompts, or slices of the evaluation text the search did not cut: never tuned on),
each round's requests marked anew so no server's prompt cache can serve a prompt it saw in an earlier round.
That is how the serving figures of issue 19 were measured, and what ``autotune verify`` measures later.

They all stay resident only when they fit: the candidates' peak memories (measured, else predicted) together
within the memory budget, since the tuner is meant to run on the device it tunes for. When only each alone fits,
they are kept running in turn: each deployment is started and warmed up before its loads of a round (the quiet one
and the one under the competing load) and stopped before the next deployment starts, one running at a time. Every
deployment of a round is then measured the same way, and a load under the competing load still finds its server
started and warmed up on a quiet machine, as a deployment that has run for a while is (started under the load, a
server that collapses spent 12 s of a 4-client round on its warm-up alone here). For a backend without
``resident``, or a deployment larger than the budget, every round is a fresh worker's measurement, as for
in-process backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from autotune.budget import Budget, format_bytes
from autotune.measure import tree_peak
from autotune.measure.busy import host_measurement_lock
from autotune.measure.trial import watched
from autotune.measure.worker import WorkerResult
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Backend, Params, ServedRound
from autotune.reporting import Reporter
from autotune.serve.loadgen import requests_per_load
from autotune.serve.traffic import Request, confirmation_requests, round_requests
from autotune.workload import Workload


@dataclass(frozen=True)
class Candidate:
    """A configuration to keep running: its backend, artifact and parameters, and what it needs in memory."""

    key: object
    backend: Backend
    artifact: Artifact
    params: Params
    memory_bytes: int


class ResidentRounds:
    """The deployments kept running for the rounds, and the requests each round sends them.

    Used as a context manager: ``start`` starts the deployments, which are stopped when the block ends (however
    it ends; a server also dies with this process); ``measure`` loads one of them with the requests of a round's
    slot (a round's quiet loads share one slot, its loads under the competing load another).
    """

    def __init__(self, workload: Workload, reporter: Reporter) -> None:
        self.workload = workload
        self.reporter = reporter
        self.rounds: dict[object, ServedRound] = {}
        self.peaks: dict[object, int] = {}
        self.requests: list[Request] = []
        self.what = ""
        self.in_turn: dict[object, Candidate] = {}
        """The candidates kept running one at a time (empty when they all run at once, or none does)."""
        self._running: tuple[object, str | None] | None = None
        """In turn: the candidate started last, and why it could not start (None: it runs)."""
        self._stack = ExitStack()

    def __enter__(self) -> ResidentRounds:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self.peaks:  # the servers ran beside this process: at once their peaks count together in the tuner's
            tree_peak.note_worker(max(self.peaks.values()) if self.in_turn else sum(self.peaks.values()))

    def start(self, candidates: Sequence[Candidate], budget: Budget) -> bool:
        """Keep the candidates' deployments running for the rounds when every backend serves and keeps one
        resident: all started now when together they fit ``budget``, else each in turn (``ready``) when each alone
        does; False (nothing kept) otherwise, with the reason on the console."""
        if not candidates or not all(c.backend.serves for c in candidates):
            return False
        try:
            self.requests, self.what = confirmation_requests(self.workload)
            together = sum(c.memory_bytes for c in candidates)
            if together > budget.memory_bytes:
                return self._start_in_turn(candidates, budget, together)
            for candidate in candidates:
                if not self._enter(candidate):
                    self._stop()
                    return False
        except Exception as error:  # noqa: BLE001 - a server that will not start, or a prompts file gone or edited,
            # costs residence, not the run
            self.reporter.warn(f"servers could not be kept running for the rounds ({error}); each round starts them afresh")
            self._stop()
            return False
        self.reporter.info(f"{len(candidates)} servers kept running for the rounds, loaded in turn with the same "
                           f"{requests_per_load(self.workload.concurrency)} requests a round ({self.what})")
        return True

    def _start_in_turn(self, candidates: Sequence[Candidate], budget: Budget, together: int) -> bool:
        """Keep the candidates running one at a time, when each fits ``budget`` alone and its backend keeps one."""
        largest = max(c.memory_bytes for c in candidates)
        try:  # not entered: a backend says here whether it keeps a server running (None: it does not)
            keeps = all(c.backend.resident(c.artifact, c.params, self.workload) is not None for c in candidates)
        except Exception:  # noqa: BLE001 - a backend that cannot say keeps none
            keeps = False
        if largest > budget.memory_bytes or not keeps:
            alone = f", {format_bytes(largest)} the largest alone" if largest > budget.memory_bytes else ""
            self.reporter.info(f"each round starts its servers afresh: the {len(candidates)} deployments need "
                               f"{format_bytes(together)} together{alone}, more than the "
                               f"{format_bytes(budget.memory_bytes)} budget this machine is tuned for")
            return False
        self.in_turn = {c.key: c for c in candidates}
        self.reporter.info(f"the {len(candidates)} deployments need {format_bytes(together)} together, more than the "
                           f"{format_bytes(budget.memory_bytes)} budget this machine is tuned for: each is started and "
                           "warmed up before its loads of a round and stopped before the next one starts, loaded with "
                           f"the same {requests_per_load(self.workload.concurrency)} requests a round ({self.what})")
        return True

    def __contains__(self, key: object) -> bool:
        return key in self.rounds or key in self.in_turn

    def ready(self, key: object) -> str | None:
        """Make sure ``key``'s deployment is running, started and warmed up now if it runs in turn (the one before
        it stopped first); why it could not start, or None. Called before a competing load starts, so that the load
        meets a warm server."""
        if key in self.rounds:
            return None
        if key not in self.in_turn:
            return f"{key!r} is not kept running"
        if self._running is not None and self._running[0] == key:
            return self._running[1]  # it failed to start just now: not again, under a load
        self._stop()
        candidate = self.in_turn[key]
        try:
            if not self._enter(candidate):
                raise RuntimeError(f"backend {candidate.backend.name!r} keeps no server running this time")
            self._running = (key, None)
        except Exception as error:  # noqa: BLE001 - a server that will not start fails this measurement only
            self._stop()
            self._running = (key, f"the server did not start: {error}")
        return self._running[1]

    def _enter(self, candidate: Candidate) -> bool:
        """Start ``candidate``'s deployment and keep it until ``_stop``; False when its backend keeps none."""
        started = candidate.backend.resident(candidate.artifact, candidate.params, self.workload)
        if started is None:
            return False
        with host_measurement_lock():  # a start and warm-up would disturb another tuner's measurement
            self.rounds[candidate.key] = self._stack.enter_context(started)
        return True

    def measure(self, key: object, slot: int, stop_over_itl_ms: float | None = None) -> WorkerResult:
        """One load of ``key``'s deployment with the requests of ``slot``, alone on this host, knowing whether
        other processes were busy (as ``autotune.measure.trial.measure`` measures); with ``stop_over_itl_ms``,
        stopped as soon as its p95 inter-token latency is certain to end over it (``ServedRound``). A deployment
        kept running in turn is started first unless it runs already (``ready``)."""
        why = self.ready(key)
        if why is not None:
            return WorkerResult(ok=False, error=why)
        requests = round_requests(self.requests, slot, requests_per_load(self.workload.concurrency))

        def load() -> WorkerResult:
            try:
                measurement: Measurement = (self.rounds[key](requests) if stop_over_itl_ms is None else
                                            self.rounds[key](requests, stop_over_itl_ms=stop_over_itl_ms))
            except Exception as error:  # noqa: BLE001 - the round fails, the rounds go on
                return WorkerResult(ok=False, error=str(error) or type(error).__name__)
            peak = measurement.peak_rss_bytes or 0
            self.peaks[key] = max(self.peaks.get(key, 0), peak)
            return WorkerResult(ok=True, value=measurement, peak_rss_bytes=peak)

        with host_measurement_lock():
            return watched(load)[0]

    def _stop(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.rounds.clear()
        self._running = None
