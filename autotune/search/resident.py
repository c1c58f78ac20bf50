"""Served finalists kept running through the confirmation rounds, loaded in turn with the same requests.

A server backend's rounds compare deployments under load (one client's too: a served deployment is what the
user will run, whether or not the workload is served). Started afresh for every measurement, each round
would also measure a server's start and first requests; kept running (``Backend.resident``), each round is one
load of each deployment, in the rounds' rotating order, every deployment of a round sent the same requests
(the workload's held-out prompts, or slices of the evaluation text the search did not cut: never tuned on),
each round's requests marked anew so no server's prompt cache can serve a prompt it saw in an earlier round.
That is how the serving figures of issue 19 were measured, and what ``autotune verify`` measures later.

They stay resident only when they fit: the candidates' peak memories (measured, else predicted) together
within the memory budget, since the tuner is meant to run on the device it tunes for. Otherwise, and for a
backend without ``resident``, every round is a fresh worker's measurement, as for in-process backends.
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
        self._stack = ExitStack()

    def __enter__(self) -> ResidentRounds:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self.peaks:  # the servers ran at once, beside this process: their peaks count together in the tuner's
            tree_peak.note_worker(sum(self.peaks.values()))

    def start(self, candidates: Sequence[Candidate], budget: Budget) -> bool:
        """Start every candidate's deployment when every backend serves and keeps one resident, and together they
        fit ``budget``; False (nothing started) otherwise, with the reason on the console."""
        if not candidates or not all(c.backend.serves for c in candidates):
            return False
        together = sum(c.memory_bytes for c in candidates)
        if together > budget.memory_bytes:
            self.reporter.info(f"each round starts its servers afresh: the {len(candidates)} deployments need "
                               f"{format_bytes(together)} together, more than the {format_bytes(budget.memory_bytes)} "
                               "budget this machine is tuned for")
            return False
        try:
            self.requests, self.what = confirmation_requests(self.workload)
            for candidate in candidates:
                started = candidate.backend.resident(candidate.artifact, candidate.params, self.workload)
                if started is None:
                    self._stop()
                    return False
                self.rounds[candidate.key] = self._stack.enter_context(started)
        except Exception as error:  # noqa: BLE001 - a server that will not start costs residence, not the run
            self.reporter.warn(f"servers could not be kept running for the rounds ({error}); each round starts them afresh")
            self._stop()
            return False
        self.reporter.info(f"{len(candidates)} servers kept running for the rounds, loaded in turn with the same "
                           f"{requests_per_load(self.workload.concurrency)} requests a round ({self.what})")
        return True

    def __contains__(self, key: object) -> bool:
        return key in self.rounds

    def measure(self, key: object, slot: int, stop_over_itl_ms: float | None = None) -> WorkerResult:
        """One load of ``key``'s deployment with the requests of ``slot``, alone on this host, knowing whether
        other processes were busy (as ``autotune.measure.trial.measure`` measures); with ``stop_over_itl_ms``,
        stopped as soon as its p95 inter-token latency is certain to end over it (``ServedRound``)."""
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
