"""Fuzz every parser of user-typed numbers, and `autotune run`'s option checking, with random and mutated text.

Targets: ``parse_size``, ``parse_duration``, ``Budget.parse`` and the ``run`` command line (``parse_args`` and
``check_run_options``, the checks `autotune run` makes before it probes or measures anything; no tune runs).
Each case must end in a value within range or in the project's own error with a one-line message; anything
else (another exception, an out-of-range value, a message over several lines) is counted as unexpected.

    .venv/bin/python bench/fuzz_inputs.py [--cases 12000] [--seed 0]

Prints, per target, the cases run, how many were accepted and refused, and the unexpected ones (target 0);
exits with status 1 when any target had one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from autotune.budget import MAX_QUALITY_LOSS, Budget, parse_duration, parse_size
from autotune.cli import parse_args
from autotune.errors import AutotuneError, BudgetError
from autotune.numbers import MAX_DURATION_S, MAX_SIZE_BYTES, MIN_DURATION_S
from autotune.run_options import check_run_options

SIZES = ["2GB", "2G", "1.5GiB", "800MB", "512MiB", "4096", "0.5TB", "1KiB", "100mb", ".5GB", "2gib"]
DURATIONS = ["50ms", "0.05s", "1s", "800us", "3600s", "1us", "300s", "0.5ms"]
WHOLES = ["10", "0", "1", "5", "2048", "128", "64", "-1", "4294967295", "1024"]
REALS = ["0.05", "0", "1e-3", "5E-2", ".5", "100", "nan", "inf", "-0"]
PATHS = ["model.gguf", "", "~", "~nobody/x.gguf", "/dev/null", "/", ".", "a\0b", "x" * 300, "/proc/self/fd/0",
         "profiles", "/etc/hostname/x", "\n", "-"]
OPTIONS: dict[str, list[str]] = {
    "--budget": SIZES, "--latency": DURATIONS, "--ttft": DURATIONS, "--timeout": DURATIONS,
    "--max-quality-loss": REALS, "--trials": WHOLES, "--prompt-tokens": WHOLES, "--gen-tokens": WHOLES,
    "--context": WHOLES, "--depth": WHOLES, "--eval-tokens": WHOLES, "--confirm-rounds": WHOLES,
    "--seed": WHOLES, "--model": PATHS, "--eval-text": PATHS, "--out": PATHS,
    "--objective": ["quality", "latency", "memory", "speed"], "--backend": ["llamacpp", "nope"],
}
FLAGS = ["--strict", "--no-quality", "--json", "-h", "--", "--bogus"]
ALPHABET = "0123456789.,eE+-_ \t\n\r\x00kKmMgGtTiIbBsSuµ٥١nafNAF∞~/\\'\"$;%"


def random_text(rng: random.Random) -> str:
    """Text of every shape: short junk, long digit runs, arbitrary code points."""
    shape = rng.random()
    if shape < 0.45:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
    if shape < 0.6:
        return "9" * rng.randint(20, 10_000) + rng.choice(["", "GB", "ms", "s", "TiB", ".5"])
    if shape < 0.8:
        return "".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(0, 20)))
    return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}{rng.choice(['', 'GB', 'ms', 's', 'us', 'e400', 'x'])}"


def mutate(rng: random.Random, text: str) -> str:
    """One to four small edits of a valid input: the near misses a user actually types."""
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        edit = rng.randrange(9)
        if edit == 0:
            text = text[:at] + rng.choice(ALPHABET) + text[at:]
        elif edit == 1 and text:
            text = text[:at] + text[at + 1:]
        elif edit == 2 and text:
            text = text[:at] + rng.choice(ALPHABET) + text[at + 1:]
        elif edit == 3:
            text = text[:at] + " " + text[at:]
        elif edit == 4:
            text = "9" * rng.choice([3, 30, 400, 9_998]) + text
        elif edit == 5:
            text = rng.choice(["-", "+", ".", "0"]) + text
        elif edit == 6:
            text = text + text
        elif edit == 7:
            text = text.upper() if rng.random() < 0.5 else text.swapcase()
        else:
            text = text[:at] + rng.choice(["e9", "e-9", "nan", "inf", "\n", "\x00", "_"]) + text[at:]
    return text


def text_for(rng: random.Random, seeds: list[str]) -> str:
    """A mutated seed most of the time, otherwise random text."""
    return mutate(rng, rng.choice(seeds)) if rng.random() < 0.7 else random_text(rng)


@dataclass
class Tally:
    """What one target did with its cases."""

    name: str
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def flag(self, case: object, what: str) -> None:
        """Count an unexpected outcome, keeping the first few to show."""
        self.unexpected += 1
        if len(self.examples) < 3:
            self.examples.append(f"{ascii(case)[:160]} -> {what[-400:]}")


def one_line(message: str) -> bool:
    """Whether a message prints as one line."""
    return bool(message) and message.isprintable()


def run_target(name: str, cases: int, rng: random.Random, make: Callable[[random.Random], object],
               check: Callable[[object], bool]) -> Tally:
    """Run ``cases`` cases; ``check`` returns True for an accepted value and False for a proper refusal."""
    tally = Tally(name)
    start = time.perf_counter()
    for _ in range(cases):
        case = make(rng)
        tally.cases += 1
        try:
            if check(case):
                tally.accepted += 1
            else:
                tally.refused += 1
        except Exception as error:  # noqa: BLE001 - this is what the fuzzer counts
            tally.flag(case, f"{type(error).__name__}: {error}")
    tally.seconds = time.perf_counter() - start
    return tally


class Unexpected(Exception):
    """A case ended in something other than an in-range value or a proper one-line refusal."""


def check_size(text: object) -> bool:
    try:
        size = parse_size(str(text))
    except BudgetError as error:
        if not one_line(str(error)):
            raise Unexpected(f"message not one line: {error!r}") from None
        return False
    if not (isinstance(size, int) and 1 <= size <= MAX_SIZE_BYTES):
        raise Unexpected(f"out of range: {size!r}")
    return True


def check_duration(text: object) -> bool:
    try:
        seconds = parse_duration(str(text))
    except BudgetError as error:
        if not one_line(str(error)):
            raise Unexpected(f"message not one line: {error!r}") from None
        return False
    if not (math.isfinite(seconds) and MIN_DURATION_S <= seconds <= MAX_DURATION_S):
        raise Unexpected(f"out of range: {seconds!r}")
    return True


def valid_or_fuzzed(rng: random.Random, seeds: list[str]) -> str:
    """Half the time a valid seed, so that the other parts of a case get exercised too."""
    return rng.choice(seeds) if rng.random() < 0.5 else text_for(rng, seeds)


def make_budget(rng: random.Random) -> tuple[str, str, str | None, str | float | None]:
    loss: str | float | None = rng.choice([None, valid_or_fuzzed(rng, REALS),
                                           rng.choice([math.nan, math.inf, -math.inf, 1e400, -1.0, 0.05, 1e300, 0.0])])
    ttft = rng.choice([None, valid_or_fuzzed(rng, DURATIONS)])
    return valid_or_fuzzed(rng, SIZES), valid_or_fuzzed(rng, DURATIONS), ttft, loss


def check_budget(case: object) -> bool:
    memory, latency, ttft, loss = case  # type: ignore[misc]
    try:
        budget = Budget.parse(memory, latency, ttft, loss)
    except BudgetError as error:
        if not one_line(str(error)):
            raise Unexpected(f"message not one line: {error!r}") from None
        return False
    finite = all(math.isfinite(v) for v in (budget.latency_ms, budget.ttft_ms or 1, budget.max_quality_loss or 0))
    if not (finite and 1 <= budget.memory_bytes <= MAX_SIZE_BYTES and budget.latency_ms > 0
            and 0 <= (budget.max_quality_loss or 0) <= MAX_QUALITY_LOSS):
        raise Unexpected(f"out of range: {budget!r}")
    return True


def make_argv(rng: random.Random) -> list[str]:
    """A `run` command line: the budgets, then random options with mutated values, flags and stray words."""
    argv = ["run"]
    if rng.random() < 0.95:
        argv += ["--budget", valid_or_fuzzed(rng, SIZES)]
    if rng.random() < 0.95:
        argv += ["--latency", valid_or_fuzzed(rng, DURATIONS)]
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.8:
            option = rng.choice(list(OPTIONS))
            value = valid_or_fuzzed(rng, OPTIONS[option])
            argv += [f"{option}={value}"] if rng.random() < 0.2 else [option, value]
        elif roll < 0.9:
            argv.append(rng.choice(FLAGS))
        else:
            argv.append(random_text(rng)[:60])
    return argv


def check_cli(case: object) -> bool:
    argv: list[str] = case  # type: ignore[assignment]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parse_args(argv)
    except SystemExit as exit:
        lines = err.getvalue().splitlines()
        if exit.code == 0 and "usage:" in out.getvalue():
            return False  # -h: the help, as asked
        if exit.code != 2 or len(lines) != 1 or not lines[0].startswith("autotune: error: ") \
                or not one_line(lines[0]):
            raise Unexpected(f"exit {exit.code!r}, stderr {err.getvalue()!r}") from None
        return False
    try:
        check_run_options(args)
    except AutotuneError as error:
        if not one_line(str(error)) or "--" not in str(error):
            raise Unexpected(f"message not one line or names no option: {error!r}") from None
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12_000, help="cases per target (default: 12000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args()
    targets: list[tuple[str, Callable[[random.Random], object], Callable[[object], bool]]] = [
        ("parse_size", lambda rng: text_for(rng, SIZES), check_size),
        ("parse_duration", lambda rng: text_for(rng, DURATIONS), check_duration),
        ("Budget.parse", make_budget, check_budget),
        ("run options (CLI)", make_argv, check_cli),
    ]
    print(f"{'target':<20} {'cases':>7} {'accepted':>9} {'refused':>8} {'unexpected':>11} {'seconds':>8}")
    failed = False
    for name, make, check in targets:
        tally = run_target(name, args.cases, random.Random(f"{args.seed}:{name}"), make, check)
        print(f"{tally.name:<20} {tally.cases:>7} {tally.accepted:>9} {tally.refused:>8} {tally.unexpected:>11} "
              f"{tally.seconds:>8.2f}")
        for line in tally.examples:
            print(f"    e.g. {line}")
        failed |= tally.unexpected > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
