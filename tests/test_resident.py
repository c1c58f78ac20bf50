"""Served finalists kept running through the confirmation rounds (``autotune.search.resident``)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autotune import SilentReporter
from autotune.budget import Budget
from autotune.measure.busy import LOCK_NAME
from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params, ServedRound
from autotune.search.resident import Candidate, ResidentRounds
from autotune.serve.traffic import Request
from autotune.store.cache import cache_dir
from autotune.testing import FakeBackend
from autotune.workload import Workload

SERVED = Workload(prompt_tokens=32, gen_tokens=8, context=256, concurrency=2)


class ResidentFake(FakeBackend):
    """A fake that keeps a "server" per configuration: it records starts, stops and the requests of every load."""

    serves = True

    def __init__(self, fail_to_start: bool = False, broken: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.fail_to_start = fail_to_start
        self.broken = broken
        """Configurations whose server will not start (each attempt still counted in ``attempts``)."""
        self.attempts: list[str] = []
        self.locked_at_start: list[bool] = []
        """Whether the host's measurement lock was held while each server started (another tuner measuring)."""
        self.running: set[str] = set()
        self.started: list[str] = []
        self.loads: list[tuple[str, list[str]]] = []
        self.bounds: list[dict[str, float]] = []

    def resident(self, artifact: Artifact, params: Params, workload: Workload) -> Any:
        name = str(params["quant"])

        @contextmanager
        def server() -> Iterator[ServedRound]:
            self.attempts.append(name)
            self.locked_at_start.append(measurement_lock_held())
            if self.fail_to_start or name in self.broken:
                raise RuntimeError("port in use")
            self.started.append(name)
            self.running.add(name)
            try:
                def load(requests: Sequence[Request], **bound: float) -> Measurement:
                    self.loads.append((name, [r.text for r in requests]))
                    self.bounds.append(bound)
                    return Measurement(load_s=0.1, ttft_ms=20, itl_p50_ms=10, itl_p95_ms=12, decode_tps=100,
                                       prefill_tps=1000, peak_rss_bytes=2**27, runs=1, spread=0.0)
                yield load
            finally:
                self.running.discard(name)

        return server()


def measurement_lock_held() -> bool:
    """Whether someone holds the host's measurement lock (a second holder would have to wait)."""
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def candidates(backend: ResidentFake, memory: int = 2**28) -> list[Candidate]:
    artifact = Artifact(path=Path("/m.gguf"), format="gguf", precision="f16", bits_per_weight=16.0, size_bytes=2**20)
    return [Candidate(key=quant, backend=backend, artifact=artifact, params={"quant": quant}, memory_bytes=memory)
            for quant in ("f16", "Q8_0")]


def test_every_round_sends_the_same_new_requests_to_every_server_and_stops_them() -> None:
    backend = ResidentFake()
    with ResidentRounds(SERVED, SilentReporter()) as rounds:
        assert rounds.start(candidates(backend), Budget.parse("2GB", "1s"))
        assert backend.running == {"f16", "Q8_0"}
        for slot in (0, 1, 2):
            for key in ("Q8_0", "f16"):
                result = rounds.measure(key, slot)
                assert result.ok and result.value.context["busy"]["cores"]
    assert backend.running == set(), "a resident server outlived the rounds"
    by_slot = [[texts for _, texts in backend.loads[i:i + 2]] for i in range(0, 6, 2)]
    for first, second in by_slot:
        assert first == second and len(first) == 4  # paired: the same requests; two a client, at least four
    sent = [text for texts in (pair[0] for pair in by_slot) for text in texts]
    assert len(set(sent)) == len(sent)  # no request repeated to a server across rounds: its prompt cache cannot help
    assert backend.started == ["f16", "Q8_0"]  # started once each, not once a round
    assert backend.locked_at_start == [True, True]  # no start disturbs another tuner's measurement


def test_servers_that_fit_the_budget_only_alone_run_in_turn_with_the_same_requests() -> None:
    backend = ResidentFake()
    reporter = SilentReporter()
    with ResidentRounds(SERVED, reporter) as rounds:
        assert rounds.start(candidates(backend, memory=2**30), Budget.parse("1.5GB", "1s"))
        assert "f16" in rounds and not backend.started  # nothing runs before its first load
        for slot in (0, 1):
            for key in ("Q8_0", "f16"):
                assert rounds.ready(key) is None and backend.running == {key}  # one at a time, started before
                assert rounds.measure(key, 2 * slot).ok and rounds.measure(key, 2 * slot + 1).ok  # its loads
                assert backend.running == {key}
    assert backend.running == set(), "a server kept running in turn outlived the rounds"
    assert backend.started == ["Q8_0", "f16", "Q8_0", "f16"]  # once a round each: both loads on one start
    assert all(backend.locked_at_start)
    loads = {(name, index): texts for index, (name, texts) in enumerate(backend.loads)}
    assert [texts for (name, _), texts in loads.items() if name == "Q8_0"] == \
        [texts for (name, _), texts in loads.items() if name == "f16"]  # paired: the same requests, slot by slot
    assert any("started and warmed up before its loads" in m for m in reporter.messages)


def test_a_server_larger_than_the_budget_alone_is_not_kept_running() -> None:
    backend = ResidentFake()
    reporter = SilentReporter()
    with ResidentRounds(SERVED, reporter) as rounds:
        assert not rounds.start(candidates(backend, memory=2**31), Budget.parse("1.5GB", "1s"))
        assert "f16" not in rounds and not backend.started
    assert any("afresh" in m and "largest alone" in m for m in reporter.messages)


def test_a_server_run_in_turn_that_will_not_start_fails_its_own_loads_only() -> None:
    backend = ResidentFake(broken=frozenset({"f16"}))
    with ResidentRounds(SERVED, SilentReporter()) as rounds:
        assert rounds.start(candidates(backend, memory=2**30), Budget.parse("1.5GB", "1s"))
        assert rounds.ready("f16") == "the server did not start: port in use"
        failed = rounds.measure("f16", 0)
        assert not failed.ok and "port in use" in (failed.error or "")
        assert backend.attempts == ["f16"]  # the measurement after a failed start does not try again under its load
        assert rounds.measure("Q8_0", 0).ok and backend.running == {"Q8_0"}


def test_a_server_that_will_not_start_costs_residence_only() -> None:
    reporter = SilentReporter()
    with ResidentRounds(SERVED, reporter) as rounds:
        assert not rounds.start(candidates(ResidentFake(fail_to_start=True)), Budget.parse("2GB", "1s"))
    assert any("port in use" in w and "afresh" in w for w in reporter.warnings)


def test_a_backend_without_residence_keeps_fresh_workers_and_a_server_stays_resident_for_one_client() -> None:
    backend = ResidentFake()  # one client through a server backend: the deployment is still a server
    with ResidentRounds(Workload(prompt_tokens=32, gen_tokens=8, context=256), SilentReporter()) as rounds:
        assert rounds.start(candidates(backend), Budget.parse("2GB", "1s"))
        assert rounds.measure("f16", 0).ok and len(backend.loads[0][1]) == 4
    plain = FakeBackend()
    artifact = Artifact(path=Path("/m.gguf"), format="gguf", precision="f16", bits_per_weight=16.0, size_bytes=2**20)
    with ResidentRounds(SERVED, SilentReporter()) as rounds:
        assert not rounds.start([Candidate("f16", plain, artifact, {"quant": "f16"}, 2**20)], Budget.parse("2GB", "1s"))


def test_a_bound_reaches_the_server_only_when_given() -> None:
    # A load under the competing load stops once certain to be over the latency budget; a quiet one is called as a
    # third party's one-argument ServedRound is (the bound is never passed where there is none).
    backend = ResidentFake()
    with ResidentRounds(SERVED, SilentReporter()) as rounds:
        assert rounds.start(candidates(backend), Budget.parse("2GB", "1s"))
        assert rounds.measure("f16", 0).ok and rounds.measure("f16", 1, stop_over_itl_ms=50.0).ok
    assert backend.bounds == [{}, {"stop_over_itl_ms": 50.0}]


def test_a_prompts_file_edited_before_the_rounds_costs_residence_in_either_mode(tmp_path: Path) -> None:
    # Its held-out prompts are what the rounds send: read at the start, a gone or edited file is one warning and
    # fresh workers, whether the deployments would run all at once or in turn.
    from autotune.serve.traffic import describe_prompts

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(8)))
    workload = Workload(prompt_tokens=32, gen_tokens=8, context=256, concurrency=2, prompts=describe_prompts(prompts))
    prompts.write_text(prompts.read_text() + json.dumps({"prompt": "one more"}) + "\n")
    for memory in (2**28, 2**30):  # together within 1.5 GB, then only each alone
        backend, reporter = ResidentFake(), SilentReporter()
        with ResidentRounds(workload, reporter) as rounds:
            assert not rounds.start(candidates(backend, memory=memory), Budget.parse("1.5GB", "1s"))
            assert "f16" not in rounds and not backend.started
        assert any("changed" in w and "afresh" in w for w in reporter.warnings), reporter.warnings
