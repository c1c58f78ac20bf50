"""A served workload: --clients and --prompts on the command line, its identity in the store, and which backends
may measure it (no runtime needed: a fake backend stands for each kind)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from autotune.cli.main import build_parser
from autotune.cli.run_options import check_question
from autotune.errors import InputError
from autotune.measurement import ServedFigures
from autotune.options import TuneOptions
from autotune.reporting import SilentReporter
from autotune.search.sources import _single_stream_server, _workload_refusal
from autotune.serve.traffic import TrafficError, describe_prompts, text_requests, workload_traffic
from autotune.store.view import search_scope
from autotune.testing.conformance import example_hardware
from autotune.testing.fake_backend import FakeBackend
from autotune.workload import Workload

BASE = ["run", "--budget", "2GB", "--latency", "50ms"]
CHAT = [{"messages": [{"role": "user", "content": "Summarise this paragraph about trains " * 10}], "max_tokens": 40},
        {"prompt": "Copy the following list: apples, pears, plums, " * 5, "max_tokens": 24},
        {"prompt": "Write a haiku about the sea " * 4}, {"prompt": "Explain TCP slow start " * 8, "max_tokens": 32}]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in CHAT))
    return path


def question(*args: str) -> Workload:
    return check_question(build_parser().parse_args([*BASE, *args])).workload


def test_without_the_options_the_workload_is_todays_single_stream() -> None:
    workload = question()
    assert (workload.concurrency, workload.prompts, workload.served) == (1, None, False)
    assert (workload.prompt_tokens, workload.gen_tokens) == (128, 64)
    # the store key of a single stream is what it was before served workloads existed
    assert workload.key() == Workload().model_dump(exclude={"prompts", "stop_over_itl_ms"}) and "prompts" not in workload.key()


def test_prompts_file_sets_the_workload(jsonl: Path) -> None:
    workload = question("--clients", "4", "--prompts", str(jsonl), "--held-out", "0.25")
    assert workload.served and workload.concurrency == 4
    assert workload.prompts is not None and workload.prompts.prompts == 4 and workload.prompts.held_out == 0.25
    traffic = workload_traffic(workload.prompts)
    assert len(traffic.held_out) == 1 and len(traffic.tuning) == 3
    assert not set(traffic.held_out) & set(traffic.tuning)
    # lengths come from the tuning prompts unless given: their median max_tokens, their median length / 4
    assert workload.gen_tokens in (24, 32, 40) and 20 < workload.prompt_tokens < 200
    assert question("--prompts", str(jsonl), "--gen-tokens", "9").gen_tokens == 9


@pytest.mark.parametrize(("args", "says"), [
    (["--clients", "0"], "--clients"),
    (["--clients", "lots"], "--clients"),
    (["--held-out", "0.2"], "--held-out needs --prompts"),
    (["--prompts", "/no/such/prompts.txt"], "--prompts"),
])
def test_bad_serving_options_are_one_line(args: list[str], says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "autotune", *BASE, *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr


def test_bad_held_out_and_bad_file(tmp_path: Path, jsonl: Path) -> None:
    for share in ("0", "1", "nan", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*BASE, "--prompts", str(jsonl), "--held-out", share])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "fine"}\n{not json\n')
    with pytest.raises(InputError, match="line 2"):
        question("--prompts", str(broken))


def test_workload_key_separates_what_differs_and_only_that(tmp_path: Path, jsonl: Path) -> None:
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_bytes(jsonl.read_bytes())
    here, there = (describe_prompts(p) for p in (jsonl, moved))
    served = Workload(concurrency=4, prompts=here)
    assert served.key() == Workload(concurrency=4, prompts=there).key()  # the same prompts anywhere
    others = [Workload(), Workload(concurrency=2), Workload(concurrency=4),
              Workload(concurrency=4, prompts=describe_prompts(jsonl, held_out=0.5)), served]
    keys = [json.dumps(w.key(), sort_keys=True) for w in others]
    assert len(set(keys)) == len(keys)
    hardware, options = example_hardware(), TuneOptions()
    scopes = {search_scope(jsonl, hardware, w, options).workload_key for w in others}
    assert len(scopes) == len(others)  # measurements of different workloads never share a store key


def test_a_changed_prompts_file_is_refused(jsonl: Path) -> None:
    described = describe_prompts(jsonl)
    jsonl.write_text(jsonl.read_text() + json.dumps({"prompt": "one more"}) + "\n")
    with pytest.raises(TrafficError, match="changed"):
        workload_traffic(described)


def test_text_prompts_start_at_different_places() -> None:
    text = " ".join(f"word{i}" for i in range(500))
    requests = text_requests(text, prompt_tokens=30, count=12)
    assert len(requests) == 12 and len({r.prompt.split()[0] for r in requests if r.prompt}) == 12
    assert all(len((r.prompt or "").split()) == 20 for r in requests)


def test_goodput_counts_requests_within_the_objective() -> None:
    figures = ServedFigures(clients=2, requests=3, itl_samples=30, wall_s=2.0, request_ttft_ms=[100, 900, 200],
                            request_itl_p95_ms=[20, 20, 80], request_tokens=[10, 10, 10], drafted=10, accepted=4)
    assert figures.goodput_tok_s(None, None) == figures.throughput_tok_s == 15
    assert figures.goodput_tok_s(500, None) == 10
    assert figures.goodput_tok_s(500, 50) == 5
    assert figures.acceptance == 0.4


class Serving(FakeBackend):
    name: ClassVar[str] = "fake-serving"
    serves: ClassVar[bool] = True



def test_who_measures_a_served_workload() -> None:
    reporter = SilentReporter()
    served, single = Workload(concurrency=2), Workload()
    assert "single stream" in (_workload_refusal(FakeBackend(), served, reporter) or "")
    assert _workload_refusal(Serving(), served, reporter) is None
    assert _workload_refusal(FakeBackend(), single, reporter) is None
    # a default single-stream run leaves the server out; a served one keeps it
    assert "--clients" in (_single_stream_server(Serving(), single, reporter) or "")
    assert _single_stream_server(Serving(), served, reporter) is None
    assert len(reporter.messages) == 2 and not reporter.warnings
    assert _workload_refusal(FakeBackend(), served, reporter, named=True) and len(reporter.warnings) == 1
