"""The measurement protocol in the core: warm-up, timed runs, the spread check, the deep run.

A scripted session advances a fake clock by set amounts, so every figure is known exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autotune import DecodeSession, Measurement, Workload, logprob_chunks, measure_session, prompt_text_tokens
from autotune.plugins.protocol import SPREAD_LIMIT
from autotune.store.snapshots import kept_fill, prune
from autotune.workload import PROMPT_TEXT

PREFILL_S_PER_TOKEN = 0.001
PICK_S = 0.0005
LOAD_S = 0.25


class Clock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedSession(DecodeSession):
    """Each run's decode steps take the next scripted number of seconds (the warm-up's first)."""

    def __init__(self, clock: Clock, step_s: list[float], fail_at_run: int | None = None) -> None:
        clock.now += LOAD_S
        self.clock, self.step_s, self.fail_at_run = clock, list(step_s), fail_at_run
        self.runs = 0
        self.fills: list[int] = []
        self.steps_per_run: list[int] = []
        self.closed = False
        self.next_token = 0

    def prompt_tokens(self, count: int) -> list[int]:
        return [7] * count

    def reset(self) -> None:
        self.runs += 1
        self.steps_per_run.append(0)
        if self.runs == self.fail_at_run:
            raise RuntimeError("the runtime fell over")

    def prefill(self, tokens: list[int]) -> None:
        self.fills.append(len(tokens))
        self.clock.now += PREFILL_S_PER_TOKEN * len(tokens)

    def first_token(self) -> int:
        self.clock.now += PICK_S
        self.next_token = 1
        return 1

    def step(self, token: int) -> int:
        assert token == self.next_token, "the core feeds back the token the session picked"
        self.clock.now += self.step_s[self.runs - 1]
        self.steps_per_run[-1] += 1
        self.next_token = token + 1
        return self.next_token

    def close(self) -> dict[str, object]:
        self.closed = True
        return {"device": "scripted"}


def _measure(step_s: list[float], workload: Workload) -> tuple[Measurement, ScriptedSession]:
    clock = Clock()
    sessions: list[ScriptedSession] = []

    def load() -> ScriptedSession:
        sessions.append(ScriptedSession(clock, step_s))
        return sessions[0]

    return measure_session(load, workload, clock=clock), sessions[0]


def test_a_narrow_spread_keeps_the_planned_runs() -> None:
    workload = Workload(prompt_tokens=16, gen_tokens=4, context=64, runs=3, depth=None)
    # warm-up (never counted), three timed runs 10 % apart at most, then the deep run
    measurement, session = _measure([0.5, 0.010, 0.011, 0.0105, 0.020], workload)
    assert session.fills == [16, 16, 16, 16, 60]  # warm-up, 3 runs, deep fill to context - gen_tokens
    assert session.steps_per_run == [4] * 5 and session.closed
    assert measurement.runs == 3 and measurement.extra_runs == 0
    assert measurement.spread == pytest.approx((100 - 1 / 0.011) / (1 / 0.0105)) and measurement.spread < SPREAD_LIMIT
    assert measurement.decode_tps == pytest.approx(1 / 0.0105)
    assert measurement.decode_tps_runs == pytest.approx([100, 1 / 0.011, 1 / 0.0105])
    assert measurement.load_s == pytest.approx(LOAD_S)
    assert measurement.prefill_tps == pytest.approx(1 / PREFILL_S_PER_TOKEN)
    assert measurement.ttft_ms == pytest.approx((16 * PREFILL_S_PER_TOKEN + PICK_S) * 1000)
    assert measurement.deep_depth == 60 and measurement.deep_itl_p50_ms == pytest.approx(20)
    assert measurement.context == {"device": "scripted"}


def test_a_wide_spread_times_as_many_runs_again_and_summarises_all() -> None:
    workload = Workload(prompt_tokens=16, gen_tokens=4, context=64, runs=3, depth=0)
    # the second timed run is 30 % slower: three more runs, then all six are summarised (no deep run: depth 0)
    measurement, session = _measure([0.5, 0.010, 0.013, 0.010, 0.010, 0.010, 0.010], workload)
    assert session.fills == [16] * 7 and session.closed
    assert measurement.runs == 6 and measurement.extra_runs == 3 and len(measurement.decode_tps_runs) == 6
    assert measurement.spread == pytest.approx((100 - 1 / 0.013) / 100)  # the outlier still shows
    assert measurement.decode_tps == pytest.approx(100)  # but no longer moves the median
    assert measurement.deep_depth is None and measurement.deep_itl_p50_ms is None


def test_one_run_has_no_spread_to_judge() -> None:
    measurement, session = _measure([0.5, 0.010], Workload(prompt_tokens=8, gen_tokens=2, context=64, runs=1, depth=0))
    assert measurement.runs == 1 and measurement.extra_runs == 0 and measurement.spread == 0
    assert session.fills == [8, 8]


def test_the_session_is_closed_when_a_run_fails() -> None:
    clock = Clock()
    session = ScriptedSession(clock, [0.01] * 5, fail_at_run=3)
    with pytest.raises(RuntimeError, match="fell over"):
        measure_session(lambda: session, Workload(prompt_tokens=8, gen_tokens=2, context=64, runs=3), clock=clock)
    assert session.closed


def test_records_from_before_the_spread_check_still_load() -> None:
    old = {"load_s": 1, "ttft_ms": 2, "itl_p50_ms": 3, "itl_p95_ms": 4, "decode_tps": 5, "prefill_tps": 6,
           "runs": 3, "spread": 0.3}
    assert Measurement.model_validate(old).extra_runs == 0


def test_prompt_text_tokens_repeat_the_text_with_one_bos() -> None:
    def encode(text: str, first: bool) -> list[int]:
        return ([0] if first else []) + [len(word) for word in text.split()]

    words = len(PROMPT_TEXT.split())
    tokens = prompt_text_tokens(encode, 2 * words + 5)
    assert len(tokens) == 2 * words + 5 and tokens.count(0) == 1 and tokens[0] == 0
    assert tokens[1:words + 1] == tokens[words + 1:2 * words + 1]


def test_logprob_chunks_cover_every_prediction_once() -> None:
    assert logprob_chunks(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert logprob_chunks(list(range(9)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a last lone token predicts nothing
    with pytest.raises(ValueError, match="at least 2"):
        logprob_chunks([1, 2, 3], 1)


class KeepingSession(ScriptedSession):
    """A scripted session that can save its cache to a file and load it back (as the file's token list)."""

    cached: list[int]

    def reset(self) -> None:
        super().reset()
        self.cached = []

    def prefill(self, tokens: list[int]) -> None:
        super().prefill(tokens)
        self.cached += tokens

    def save_context(self, path: Path) -> bool:
        path.write_text(",".join(map(str, self.cached)))
        return True

    def load_context(self, path: Path, tokens: list[int]) -> bool:
        if not path.is_file() or path.read_text() != ",".join(map(str, tokens)):
            return False
        self.cached = list(tokens)
        return True


def test_the_deep_fill_is_prefilled_once_then_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path))
    workload = Workload(prompt_tokens=16, gen_tokens=4, context=64, runs=1)  # deep run from position 60
    kept = kept_fill({"config": "a"}, tail=8)
    measured = []
    for _ in range(2):
        clock = Clock()
        session = KeepingSession(clock, [0.01, 0.02, 0.03])
        measured.append((measure_session(lambda session=session: session, workload, clock=clock, kept=kept),
                         session))
    (first, prefilled), (second, loaded) = measured
    assert prefilled.fills == [16, 16, 52, 8]  # warm-up, timed run, the fill but its tail (saved), the tail
    assert loaded.fills == [16, 16, 8]  # the fill loaded but its tail, which is prefilled
    assert prefilled.cached == loaded.cached == [7] * 60
    assert first.deep_depth == second.deep_depth == 60
    assert first.deep_itl_p95_ms == pytest.approx(30.0) and second.deep_itl_p95_ms == pytest.approx(30.0)
    assert [p.name for p in kept.path.parent.iterdir()] == [kept.path.name]  # whole files only, no temporary left

    clock = Clock()
    other = KeepingSession(clock, [0.01, 0.02, 0.03])
    measure_session(lambda: other, workload.model_copy(update={"context": 80}), clock=clock, kept=kept)
    assert other.fills[-2:] == [68, 8]  # a snapshot of another fill is not used, and is replaced
    assert kept.path.read_text() == ",".join(["7"] * 68)


def test_saved_contexts_are_pruned_oldest_first_and_left_temporaries_go(tmp_path: Path) -> None:
    for age, name in enumerate(["c.ctx", "b.ctx", "a.ctx"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (1_000_000 + age, 1_000_000 + age))
    (tmp_path / "d.ctx.123.tmp").write_bytes(b"half")
    os.utime(tmp_path / "d.ctx.123.tmp", (1_000_000, 1_000_000))
    (tmp_path / "e.ctx.456.tmp").write_bytes(b"being written")  # another process's, just now: kept
    prune(tmp_path, keep_bytes=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ctx", "b.ctx", "e.ctx.456.tmp"]
