"""Fuzz every parser of user-typed numbers, `autotune run`'s option checking, and profile validation and export.

Targets: ``parse_size``, ``parse_duration``, ``Budget.parse`` and the ``run`` command line (``parse_args`` and
``check_run_options``, the checks `autotune run` makes before it probes or measures anything; no tune runs).
Each case must end in a value within range or in the project's own error with a one-line message; anything
else (another exception, an out-of-range value, a message over several lines) is counted as unexpected.

Two more targets start from a valid profile of each built-in backend (``autotune.testing.profiles``):
``validate`` writes it to a file mutated in its JSON values, in its text or bytes, or replaced by an odd kind
of file (folder, FIFO, device, huge, missing), and loads it as `autotune validate` does; ``export`` mutates
its values (params most often) and renders every applicable exporter. A case must end in an accepted profile
(for ``export``: text from every exporter) or a one-line ``ProfileError``; anything else is unexpected, and so
is an exporter refusing a profile that validated (except Ollama refusing a path a Modelfile cannot hold).

    .venv/bin/python bench/fuzz_inputs.py [--cases 12000] [--seed 0] [--only validate --only export]

Prints, per target, the cases run, how many were accepted and refused, and the unexpected ones (target 0);
exits with status 1 when any target had one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.budget import MAX_QUALITY_LOSS, Budget, parse_duration, parse_size
from autotune.cli.main import parse_args
from autotune.cli.run_options import check_run_options
from autotune.errors import AutotuneError, BudgetError, ProfileError
from autotune.numbers import MAX_DURATION_S, MAX_SIZE_BYTES, MIN_DURATION_S
from autotune.plugins.manager import get_plugin_manager
from autotune.profile.reading import MAX_PROFILE_BYTES, load_profile, profile_from_data
from autotune.testing.profiles import (
    BACKENDS,
    DELETE,
    HOSTILE_TEXT,
    HOSTILE_VALUES,
    mutated,
    mutation_sites,
    sample_data,
    schema_choices,
)

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


MANAGER = get_plugin_manager()
INSTALLED = MANAGER.backends()
EXPORTERS = MANAGER.exporters()
SAMPLES = {backend: sample_data(backend) for backend in BACKENDS}
SITES = {backend: mutation_sites(data) for backend, data in SAMPLES.items()}
PARAM_SITES = {backend: mutation_sites(data["params"], ("params",)) for backend, data in SAMPLES.items()}
OWN_CHOICES = {name: schema_choices(backend.params_model) for name, backend in INSTALLED.items()
               if name in SAMPLES and backend.params_model}
"""Values each backend accepts somewhere in its params: mutations with them often validate, so the exporters
get exercised (arbitrary values are nearly always refused before any exporter runs)."""
CHOICES = [value for choices in OWN_CHOICES.values() for values in choices.values() for value in values]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """An arbitrary JSON-shaped value (NaN and infinity included), a value that broke export, or a near-valid one."""
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(CHOICES)
    if roll < 0.35:
        return rng.choice(HOSTILE_TEXT)
    if roll < 0.5:
        return rng.choice(HOSTILE_VALUES)
    if roll < 0.75 or depth > 2:
        return rng.choice([None, rng.random() < 0.5, rng.randint(-(2**70), 2**70), rng.uniform(-1e9, 1e9),
                           random_text(rng)[:50], rng.choice([math.nan, math.inf, 1e308]) * rng.choice([1, -1])])
    if roll < 0.88:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng)[:8]: random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def mutated_profile(rng: random.Random, params_bias: float) -> dict[str, Any]:
    """A sample profile with one to three mutations, in its params with probability ``params_bias``."""
    backend = rng.choice(BACKENDS)
    data = SAMPLES[backend]
    for _ in range(rng.choice([1, 1, 2, 3])):
        site = rng.choice(PARAM_SITES[backend] if rng.random() < params_bias else SITES[backend])
        field_choices = OWN_CHOICES.get(backend, {}).get(site[1]) if site[0] == "params" and len(site) == 2 else None
        roll = rng.random()
        if roll < 0.1:
            value = DELETE
        elif roll < 0.55 and field_choices:
            value = rng.choice(field_choices)  # a value this parameter accepts (or a bound of it)
        else:
            value = random_json(rng)
        data = mutated(data, site, value)
    return data


class OddFiles:
    """Files of every kind and shape a profile path can name, made once in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.case = folder / "case.json"
        huge = folder / "huge.json"
        with huge.open("wb") as file:
            file.truncate(MAX_PROFILE_BYTES + 1)  # sparse
        (folder / "a-file").write_text("x")
        self.kinds: list[Path] = [folder, huge, folder / "missing.json", folder / "a-file" / "below.json",
                                  Path("/dev/null"), Path("/dev/zero")]
        if hasattr(os, "mkfifo"):
            os.mkfifo(folder / "fifo.json")
            self.kinds.append(folder / "fifo.json")


def make_profile_file(rng: random.Random) -> tuple[str, Any]:
    """A case for ``validate``: mutated values, mutated text, flipped bytes, or an odd kind of file."""
    roll = rng.random()
    if roll < 0.55:
        return "json", mutated_profile(rng, params_bias=0.5)
    text = json.dumps(SAMPLES[rng.choice(BACKENDS)])
    if roll < 0.8:
        return "text", mutate(rng, text)
    if roll < 0.97:
        raw = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        cut = rng.choice([len(raw), len(raw), rng.randrange(len(raw) + 1)])
        return "bytes", bytes(raw[:cut])
    return "kind", rng.randrange(1_000)


def check_profile_file(case: object, odd: OddFiles) -> bool:
    kind, content = case  # type: ignore[misc]
    path = odd.case
    if kind == "kind":
        path = odd.kinds[content % len(odd.kinds)]
    elif kind == "bytes":
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content) if kind == "json" else content, encoding="utf-8", errors="surrogatepass")
    try:
        load_profile(path, INSTALLED)
    except ProfileError as error:
        if not one_line(str(error)):
            raise Unexpected(f"message not one line: {error!r}") from None
        return False
    return True


def check_export(case: object) -> bool:
    """Validate in memory (NaN, infinity and deep values reach it directly), then render every exporter."""
    try:
        profile = profile_from_data(case, "profile.json", INSTALLED)
    except ProfileError as error:
        if not one_line(str(error)):
            raise Unexpected(f"message not one line: {error!r}") from None
        return False
    rendered = True
    for exporter in EXPORTERS.values():
        if not exporter.applies_to(profile.backend.name):
            continue
        try:
            text = exporter.render(profile)
        except ProfileError as error:
            if exporter.name != "ollama" or "Modelfile" not in str(error) or not one_line(str(error)):
                raise Unexpected(f"validated, then {exporter.name} refused: {error!r}") from None
            rendered = False
            continue
        if not isinstance(text, str):
            raise Unexpected(f"{exporter.name} returned {type(text).__name__}")
    return rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12_000, help="cases per target (default: 12000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--only", action="append", default=[], metavar="TARGET", help="run only this target (repeatable)")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="autotune-fuzz-")
    odd = OddFiles(Path(scratch.name))
    targets: list[tuple[str, Callable[[random.Random], object], Callable[[object], bool]]] = [
        ("parse_size", lambda rng: text_for(rng, SIZES), check_size),
        ("parse_duration", lambda rng: text_for(rng, DURATIONS), check_duration),
        ("Budget.parse", make_budget, check_budget),
        ("run options (CLI)", make_argv, check_cli),
        ("validate", make_profile_file, lambda case: check_profile_file(case, odd)),
        ("export", lambda rng: mutated_profile(rng, params_bias=0.7), check_export),
    ]
    unknown = set(args.only) - {name for name, _, _ in targets}
    if unknown:
        parser.error(f"unknown target {', '.join(sorted(unknown))}; targets: {', '.join(n for n, _, _ in targets)}")
    print(f"{'target':<20} {'cases':>7} {'accepted':>9} {'refused':>8} {'unexpected':>11} {'seconds':>8}")
    failed = False
    for name, make, check in targets:
        if args.only and name not in args.only:
            continue
        tally = run_target(name, args.cases, random.Random(f"{args.seed}:{name}"), make, check)
        print(f"{tally.name:<20} {tally.cases:>7} {tally.accepted:>9} {tally.refused:>8} {tally.unexpected:>11} "
              f"{tally.seconds:>8.2f}")
        for line in tally.examples:
            print(f"    e.g. {line}")
        failed |= tally.unexpected > 0
    scratch.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
