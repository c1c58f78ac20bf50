"""A profile is a promise that can be checked later: measure its deployment again and compare with what it claims.

``claims`` reads what a profile promises — throughput (or decode speed), p95 inter-token latency, p95 time to
first token, peak memory — with the interval each was confirmed with; a figure the profile holds only from its
one search trial gets ``UNCONFIRMED_SLACK`` around it instead, the run-to-run noise of the machines autotune
was built on. ``judge`` says for each figure whether a new measurement holds it (inside its interval, or
better) or by how much it falls short.

The new measurement is the deployment the profile exports, wherever the profile was measured through one:
``serve`` starts the exporter's command (the measured command: same binary, same flags, the slots as measured)
on loopback, sends the held-out prompts of the profile's workload — never tuned on — or fresh slices of the
evaluation text, with its clients and lengths, in a few rounds, and records the server's peak memory. A
speculative deployment is also checked to write the same greedy text as without speculation
(``autotune.serve.speculation``). A profile measured in-process has no served command to start; ``remeasure``
runs its backend's own measurement again, in a worker, as the tuner did.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autotune.errors import AutotuneError, InputError
from autotune.files import shown_path
from autotune.serve import speculation
from autotune.serve.loadgen import LoadPlan, LoadResult, requests_per_load, run_load
from autotune.serve.server import free_port, started
from autotune.serve.traffic import EVAL_TEXT, Request, confirmation_requests, round_requests

if TYPE_CHECKING:
    from autotune.plugins.backend import Backend
    from autotune.profile.schema import DeploymentProfile

UNCONFIRMED_SLACK = 0.10
"""How far a figure known only from one search trial may move before it counts as not holding: separate runs of
one configuration differ by ±5–10% on the 2-core machines autotune was measured on (DESIGN, Measuring honestly)."""
DEFAULT_ROUNDS = 3
"""Rounds of a verification: the timed loads of one served measurement (``Workload.runs``)."""
ROUND_DEADLINE_S = 180.0
SAMPLING: dict[str, float | int] = {"seed": 0, "ignore_eos": True}
"""Sent with every request, as the llamacpp-server backend's measurement sends it (``server_measure.SAMPLING``):
the server's own sampling with a fixed seed, never greedy (greedy text flatters speculation), and always the
workload's generated tokens, so the figures compare with the profile's."""
SPECULATION_REQUESTS = 3
"""Greedy requests the speculation check compares: enough to see a difference, few enough to stay quick."""
SPECULATION_TOKENS = 64
"""Tokens each of them generates, whatever the workload's length: n-gram drafting needs a run of copied text to
start (Gemma 3 270M with ngram-mod drafted 110 tokens in 3 requests of 64 here, none in 3 of 16)."""


class VerifyError(InputError):
    """A profile that cannot be verified here (its prompts file changed, its artifact is gone, ...)."""


@dataclass(frozen=True)
class Claim:
    """One figure a profile promises: ``value`` within ``[low, high]``, better beyond one end."""

    name: str
    unit: str
    value: float
    low: float
    high: float
    higher_is_better: bool
    basis: str
    """Where the figure comes from: its confirmation rounds, or the search trial with the slack allowed."""


@dataclass(frozen=True)
class Check:
    """A claim against what was measured now."""

    claim: Claim
    observed: float
    per_round: tuple[float, ...] = ()
    samples: int | None = None
    """Requests (TTFT) or inter-token gaps (ITL) behind the percentile."""

    @property
    def holds(self) -> bool:
        """Inside the claimed interval, or better than it."""
        if self.claim.higher_is_better:
            return self.observed >= self.claim.low
        return self.observed <= self.claim.high

    @property
    def shortfall(self) -> float:
        """How far beyond the interval's near end the figure fell, relative to that end (0 when it holds)."""
        if self.holds:
            return 0.0
        edge = self.claim.low if self.claim.higher_is_better else self.claim.high
        return abs(self.observed - edge) / edge if edge else math.inf

    def line(self) -> str:
        """``throughput: 81.2 tok/s, claimed 86.0 [79.1, 90.3] (confirmed in 5 rounds): holds``."""
        claim = self.claim
        shown = (f"{claim.name}: {_fmt(self.observed)} {claim.unit} now, claimed {_fmt(claim.value)} "
                 f"[{_fmt(claim.low)}, {_fmt(claim.high)}] ({claim.basis})")
        if self.samples is not None:
            shown += f"; p95 of {self.samples} samples"
        if self.holds:
            return f"{shown}: holds"
        worse = "lower" if claim.higher_is_better else "higher"
        return f"{shown}: DOES NOT HOLD, {self.shortfall:.0%} {worse} than the interval allows"


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


@dataclass
class Verification:
    """What ``autotune verify`` found: every claim checked, how it was measured, and the speculation check."""

    how: str
    checks: list[Check] = field(default_factory=list)
    speculation: speculation.SpeculationCheck | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        """Every figure holds, and speculation (where checked and not vacuous) changed no greedy text."""
        return all(c.holds for c in self.checks) and (self.speculation is None or self.speculation.exact)

    def lines(self) -> list[str]:
        """The report, a line each."""
        lines = [self.how, *(check.line() for check in self.checks)]
        if self.speculation is not None:
            lines.append(self.speculation.summary())
        lines += self.notes
        lines.append("verdict: the profile's figures hold" if self.holds else "verdict: the profile does NOT hold")
        return lines


# -- what a profile claims ---------------------------------------------------------------------------------


def _slack(name: str, unit: str, value: float, higher_is_better: bool) -> Claim:
    return Claim(name, unit, value, value * (1 - UNCONFIRMED_SLACK), value * (1 + UNCONFIRMED_SLACK),
                 higher_is_better, f"search trial only, ±{UNCONFIRMED_SLACK:.0%} allowed")


SERVED_NAMES = ("throughput (all clients)", "p95 inter-token latency", "p95 time to first token", "peak memory")
IN_PROCESS_NAMES = ("decode speed", "p95 inter-token latency (worst of start and depth)", "time to first token",
                    "peak memory")


def claims(profile: DeploymentProfile, served: bool) -> list[Claim]:
    """The figures ``profile`` promises, the confirmed ones with their intervals; ``served``: measured through a
    server under load (named as ``SERVED_NAMES``), else in-process (``IN_PROCESS_NAMES``)."""
    measured = profile.measured
    speed, latency, first, memory = SERVED_NAMES if served else IN_PROCESS_NAMES
    found: list[Claim] = []
    confirmation = profile.confirmation
    if confirmation is not None:
        basis = f"confirmed in {confirmation.rounds} rounds"
        tps, itl = confirmation.decode_tps, confirmation.itl_p95_ms
        found.append(Claim(speed, "tok/s", tps.value, tps.low, tps.high, True, basis))
        found.append(Claim(latency, "ms", itl.value, itl.low, itl.high, False, basis))
    else:
        found.append(_slack(speed, "tok/s", measured.decode_tps, True))
        found.append(_slack(latency, "ms", measured.itl_p95_ms if served else measured.worst_itl_p95_ms, False))
    found.append(_slack(first, "ms", measured.ttft_ms, False))
    if measured.peak_rss_bytes is not None:
        found.append(_slack(memory, "MiB", measured.peak_rss_bytes / 2**20, False))
    return found


def judge(claimed: Sequence[Claim], observed: dict[str, tuple[float, ...]],
          samples: dict[str, int] | None = None) -> list[Check]:
    """Each claim against the median of its figure's rounds in ``observed`` (claims not observed are left out)."""
    checks = []
    for claim in claimed:
        rounds = observed.get(claim.name)
        if rounds:
            checks.append(Check(claim, statistics.median(rounds), tuple(rounds), (samples or {}).get(claim.name)))
    return checks


# -- the requests a verification sends --------------------------------------------------------------------


def held_out_requests(profile: DeploymentProfile) -> tuple[list[Request], str]:
    """The prompts the profile's confirmation sent (``confirmation_requests``): never tuned on."""
    return confirmation_requests(profile.workload)


# -- measuring the served deployment ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServeSettings:
    """How hard and how long ``serve`` loads the deployment."""

    rounds: int = DEFAULT_ROUNDS
    requests: int | None = None
    """Requests a round (default: the measurement's load, two per client and at least four)."""
    speculation_check: bool = True


def serve(profile: DeploymentProfile, command: Callable[[int], Sequence[str]], settings: ServeSettings) -> Verification:
    """Start ``command(port)`` (the profile's exported server) on loopback and check the profile's claims.

    The server is stopped on the way out, whatever happens (and dies with this process: ``serve.server``).
    """
    from autotune.measure.busy import watching

    workload = profile.workload
    requests, what = held_out_requests(profile)
    # The served measurement's load shape: a closed loop's throughput depends on it (its tail, when fewer clients
    # are left than started).
    count = settings.requests or requests_per_load(workload.concurrency)
    plan = LoadPlan(clients=workload.concurrency, requests=count, max_tokens=workload.gen_tokens,
                    deadline_s=ROUND_DEADLINE_S, sampling=SAMPLING)
    results: list[LoadResult] = []
    others: list[float] = []
    with tempfile.TemporaryDirectory(prefix="autotune-verify-") as scratch:
        port = free_port()
        argv = list(command(port))
        with started(argv, port, Path(scratch) / "server.log") as server:
            # Warm-up, not counted: a short request per client, as the measurement does.
            warmup = [Request(prompt="[warm-up] " + (r.prompt or r.text)) for r in requests[:workload.concurrency]]
            run_load(server.base_url, warmup, LoadPlan(clients=workload.concurrency, requests=len(warmup),
                                                       max_tokens=8, deadline_s=ROUND_DEADLINE_S, sampling=SAMPLING))
            for number in range(settings.rounds):
                with watching() as watch:
                    results.append(run_load(server.base_url, round_requests(requests, number, count), plan))
                others.append(watch.result.others_share if watch.result else 0.0)
            peak = server.peak_rss_bytes
        check = None
        if settings.speculation_check and speculation.speculates(argv):
            copies = speculation.copy_requests(EVAL_TEXT.read_text(), SPECULATION_REQUESTS)
            check = speculation.check_speculation(lambda p: speculation.without_speculation(command(p)), command,
                                                  copies, SPECULATION_TOKENS, Path(scratch))
    verification = Verification(how=(f"served {Path(argv[0]).name} on loopback: {workload.concurrency} client(s), "
                                     f"{count} requests a round of {what}, {workload.gen_tokens} tokens each, "
                                     f"{settings.rounds} rounds"), speculation=check)
    observed, samples = _served_figures(results, peak)
    verification.checks = judge(claims(profile, served=True), observed, samples)
    failed = sum(len(r.errors) for r in results)
    if failed:
        first = next(e for r in results for e in r.errors)
        verification.notes.append(f"{failed} of {sum(len(r.traces) for r in results)} requests failed (first: {first})")
    _note_busy(verification, others)
    return verification


def _served_figures(results: Sequence[LoadResult], peak: int) -> tuple[dict[str, tuple[float, ...]], dict[str, int]]:
    """The figures under ``SERVED_NAMES``, reduced as the served measurement reduces them: throughput per round
    (the median is compared), percentiles over every round's requests and gaps pooled, with their sample counts."""
    speed, latency, first, memory = SERVED_NAMES
    observed: dict[str, tuple[float, ...]] = {speed: tuple(r.throughput_tok_s for r in results)}
    samples: dict[str, int] = {}
    pooled = LoadResult(plan=results[0].plan, traces=tuple(t for r in results for t in r.traces),
                        wall_s=sum(r.wall_s for r in results))
    for name, found in ((latency, pooled.itl_ms(95)), (first, pooled.ttft_ms(95))):
        if found is not None:
            observed[name] = (found.value,)
            samples[name] = found.samples
    if peak:
        observed[memory] = (peak / 2**20,)
    return observed, samples


def _note_busy(verification: Verification, others: Sequence[float]) -> None:
    from autotune.measure.busy import DISTURBED_SHARE

    if others and max(others) > DISTURBED_SHARE:
        verification.notes.append(f"other processes took up to {max(others):.0%} of the cores while it was measured: "
                                  "a figure that does not hold may be theirs; verify again on a quiet machine")


# -- measuring an in-process profile again ----------------------------------------------------------------


def remeasure(profile: DeploymentProfile, backend: Backend, rounds: int, timeout_s: float = 300.0) -> Verification:
    """Run ``backend``'s own measurement of the profile's artifact and settings again, ``rounds`` times, each in a
    fresh worker as the tuner does, and check the profile's claims against the medians."""
    from autotune.measure.busy import Disturbance
    from autotune.measure.trial import measure
    from autotune.plugins.backend import Artifact

    info = profile.artifact
    path = Path(info.path)
    if not path.exists():
        raise VerifyError(f"the profile's artifact {shown_path(path)} is gone; tune again (autotune run) to rebuild it")
    artifact = Artifact(path=path, format=info.format, precision=info.precision,
                        bits_per_weight=info.bits_per_weight, size_bytes=info.size_bytes, details=dict(info.details))
    measurements = []
    for _ in range(rounds):
        result = measure(backend, artifact, profile.params, profile.workload, timeout_s=timeout_s,
                         memory_limit_bytes=None)
        if not result.ok:
            raise AutotuneError(f"{backend.name} could not measure the profile's configuration again: {result.error}")
        measurements.append(result.value)
    speed, latency, first, memory = IN_PROCESS_NAMES
    observed = {
        speed: tuple(m.decode_tps for m in measurements),
        latency: tuple(m.worst_itl_p95_ms for m in measurements),
        first: tuple(m.ttft_ms for m in measurements),
        memory: tuple(m.peak_rss_bytes / 2**20 for m in measurements if m.peak_rss_bytes is not None),
    }
    verification = Verification(how=f"measured again in-process ({backend.name}), {rounds} rounds of "
                                    f"{profile.workload.runs} timed runs, each in a fresh worker")
    verification.checks = judge(claims(profile, served=False), observed)
    disturbances = [d for m in measurements if (d := Disturbance.from_context(m.context)) is not None]
    _note_busy(verification, [d.others_share for d in disturbances])
    return verification
