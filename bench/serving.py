"""Serving scenarios through llama-server: how far slots, threads and n-gram speculation move a deployment.

Every candidate is a llama-server (the set-up's build for this CPU) started once and kept resident; each round
loads every candidate once, in a new random order, with the closed-loop load generator of ``autotune.serve``
and fresh prompts (slices of the evaluation text no request saw before). Per scenario, a candidate's figures
are medians over rounds, and its throughput against llama-server's own defaults is the median of the per-round
ratios with a bootstrap interval (``decide.stats.paired_ratio``), so what the machine did in one round
cancels. Every load records what other processes took of the cores while it ran.

Scenarios: ``quiet`` (4 clients, ~128-token prompts, 64 tokens each), ``busy`` (the same with a busy loop
pinned to the first core), ``copy`` (1 client asked to repeat a passage: n-gram speculation's case) and
``sampled`` (1 client, free-form text sampled at temperature 0.8: speculation's worst case).

    python bench/serving.py [--model gemma3-270m] [--rounds 4] [--scenarios quiet,busy,copy,sampled]

Prints a table; the README's "What it measured here" quotes it. This tunes nothing: it measures fixed
configurations, the evidence a serving tune has to beat.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autotune.decide.stats import paired_ratio
from autotune.measure.busy import watching
from autotune.model.bundled import model_path
from autotune.serve.loadgen import LoadPlan, LoadResult, run_load
from autotune.serve.server import RunningServer, free_port, started
from autotune.serve.traffic import Request
from autotune.testing.llama_server import llama_server_binary

EVAL_TEXT = (Path(__file__).parents[1] / "autotune" / "data" / "eval.txt").read_text()
SLICE_CHARS = 560
"""About 128 tokens of English for Gemma's and SmolLM2's tokenizers."""
TTFT_SLO_MS = 1000.0
ITL_SLO_MS = 50.0
BASELINE = "llama-server defaults"


@dataclass(frozen=True)
class Scenario:
    """One deployment's traffic: clients, what they ask, how the server samples, whether a core is busy."""

    clients: int
    kind: str  # "fresh", "copy" or "free"
    sampling: dict[str, float | int]
    busy_core: bool = False
    max_tokens: int = 64


SCENARIOS = {
    "quiet": Scenario(clients=4, kind="fresh", sampling={}),
    "busy": Scenario(clients=4, kind="fresh", sampling={}, busy_core=True),
    "copy": Scenario(clients=1, kind="copy", sampling={"temperature": 0.0}),
    "sampled": Scenario(clients=1, kind="free", sampling={"temperature": 0.8, "seed": 7}),
}

TOPICS = ["a lighthouse keeper", "a lost umbrella", "the first day of spring", "a city under snow", "an old radio",
          "a market at dawn", "a train that is always late", "a garden on a roof", "the last bookshop", "a river"]


def candidates(cores: int) -> dict[str, list[str]]:
    """The configurations compared: llama-server's defaults, the rule of thumb, slots, fewer threads, speculation."""
    every = str(cores)
    fewer = str(max(1, cores - 1))
    return {
        BASELINE: [],
        "rule of thumb: -np 1, every core": ["-np", "1", "-t", every],
        f"-np 4 -t {every}": ["-np", "4", "-t", every],
        f"-np 4 -t {fewer}": ["-np", "4", "-t", fewer],
        f"-np 4 -t {every} --spec-type ngram-mod": ["-np", "4", "-t", every, "--spec-type", "ngram-mod"],
    }


class Prompts:
    """Fresh prompts: every request a slice of the evaluation text that no earlier request used."""

    def __init__(self, seed: int) -> None:
        self.offsets = list(range(0, len(EVAL_TEXT) - SLICE_CHARS, 97))
        random.Random(seed).shuffle(self.offsets)
        self.used = 0

    def take(self, kind: str, count: int) -> list[Request]:
        requests = []
        for _ in range(count):
            start = self.offsets[self.used % len(self.offsets)]
            self.used += 1
            passage = EVAL_TEXT[start:start + SLICE_CHARS]
            if kind == "copy":
                requests.append(Request(prompt=f"Repeat the following passage exactly.\n\nPassage:\n{passage}\n\n"
                                               f"Repeated passage:\n{passage[:80]}"))
            elif kind == "free":
                topic = TOPICS[self.used % len(TOPICS)]
                requests.append(Request(prompt=f"{passage}\n\nNow write a new short story about {topic}.\n"))
            else:
                requests.append(Request(prompt=passage))
        return requests


@contextlib.contextmanager
def busy_loop(core: int) -> Iterator[None]:
    """A competing process spinning on ``core`` for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


@dataclass
class Figures:
    """One load's reduction: what the table shows."""

    goodput: float
    throughput: float
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    samples: tuple[int, int]
    acceptance: float | None
    others: float
    errors: int


def figures_of(result: LoadResult, others: float) -> Figures:
    ttft, itl = result.ttft_ms(95), result.itl_ms(95)
    return Figures(goodput=result.goodput_tok_s(TTFT_SLO_MS, ITL_SLO_MS), throughput=result.throughput_tok_s,
                   ttft_p95_ms=ttft.value if ttft else None, itl_p95_ms=itl.value if itl else None,
                   samples=(ttft.samples if ttft else 0, itl.samples if itl else 0), acceptance=result.acceptance,
                   others=others, errors=len(result.errors))


def load_once(server: RunningServer, scenario: Scenario, prompts: list[Request]) -> Figures:
    plan = LoadPlan(clients=scenario.clients, requests=len(prompts), max_tokens=scenario.max_tokens,
                    deadline_s=180, grace_s=30, sampling=scenario.sampling)
    with watching() as watch:
        result = run_load(server.base_url, prompts, plan)
    others = watch.result.others_share if watch.result else 0.0
    return figures_of(result, others)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def show(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m", help="a bundled model's name or a GGUF path")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=8, help="requests per load (4-client scenarios)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    try:
        binary = llama_server_binary()
    except LookupError as why:
        print(f"serving.py: {why}", file=sys.stderr)
        return 2
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or args.rounds < 2 or args.requests < 1:
        print(f"serving.py: scenarios are {', '.join(SCENARIOS)}; --rounds at least 2", file=sys.stderr)
        return 2
    model = model_path(args.model)
    cores = len(os.sched_getaffinity(0))
    configs = candidates(cores)
    prompts = Prompts(seed=0)
    order = random.Random(1)
    print(f"model {model.name}; llama-server {binary}; {cores} cores; {args.rounds} rounds; "
          f"goodput SLO: TTFT p95 <= {TTFT_SLO_MS:.0f} ms and p95 ITL <= {ITL_SLO_MS:.0f} ms per request")
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
        servers: dict[str, RunningServer] = {}
        for name, flags in configs.items():
            port = free_port()
            argv = [str(binary), "-m", str(model), "-c", "4096", *flags, "--host", "127.0.0.1", "--port", str(port),
                    "--no-webui"]
            servers[name] = stack.enter_context(started(argv, port, Path(logs) / f"{port}.log"))
        for scenario_name in chosen:
            scenario = SCENARIOS[scenario_name]
            count = args.requests if scenario.clients > 1 else max(2, args.requests // 2)
            rounds: dict[str, list[Figures]] = {name: [] for name in configs}
            with busy_loop(0) if scenario.busy_core else contextlib.nullcontext():
                for _ in range(args.rounds):
                    batch = prompts.take(scenario.kind, count)  # the same fresh prompts for every candidate
                    for name in order.sample(list(configs), len(configs)):
                        rounds[name].append(load_once(servers[name], scenario, batch))
            print(f"\n{scenario_name}: {scenario.clients} client(s), {count} requests a load, "
                  f"{scenario.max_tokens} tokens each, sampling {scenario.sampling or 'server default'}"
                  f"{', one core busy' if scenario.busy_core else ''}")
            print(f"{'configuration':42} {'goodput':>8} {'tok/s':>7} {'tok/s vs defaults':>18} {'TTFT p95':>9} "
                  f"{'ITL p95':>8} {'n':>8} {'accept':>7} {'others':>7} {'errors':>6}")
            base = [f.throughput for f in rounds[BASELINE]]
            for name, figures in rounds.items():
                throughputs = [f.throughput for f in figures]
                if name == BASELINE:
                    ratio = "1 (baseline)"
                elif min(base) > 0:
                    interval = paired_ratio(throughputs, base)
                    ratio = f"{interval.value:.2f} [{interval.low:.2f}, {interval.high:.2f}]"
                else:
                    ratio = "baseline had 0"
                samples = figures[0].samples
                print(f"{name:42} {show(median([f.goodput for f in figures]), 1):>8} {show(median(throughputs), 1):>7} "
                      f"{ratio:>18} {show(median([f.ttft_p95_ms for f in figures])):>9} "
                      f"{show(median([f.itl_p95_ms for f in figures])):>8} {f'{samples[0]}/{samples[1]}':>8} "
                      f"{show(median([f.acceptance for f in figures]), 2):>7} "
                      f"{median([f.others for f in figures]) or 0:>7.0%} {sum(f.errors for f in figures):>6}")
        peaks = ", ".join(f"{name}: {s.peak_rss_bytes / 2**20:.0f} MiB" for name, s in servers.items())
        print(f"\nserver peak RSS: {peaks}")
        print("goodput = tok/s of the requests that met both objectives; n = requests behind the TTFT p95 / "
              "inter-token gaps behind the ITL p95, of the first round's load; others = share of the cores other "
              "processes took during the loads (median over rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
