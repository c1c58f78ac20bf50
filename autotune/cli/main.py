"""The ``autotune`` command: thin wrappers over the library; known errors become one line.

Set ``AUTOTUNE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from pydantic import ValidationError

from autotune.cli import run_options
from autotune.cli import verify as verify_options
from autotune.cli.version import VersionAction
from autotune.errors import AutotuneError, InputError, one_line
from autotune.numbers import DURATION_FORMS, SIZE_FORMS, parse_duration, parse_size
from autotune.options import (
    DEFAULT_BUSY_SHARE,
    DEFAULT_EVAL_TOKENS,
    DEFAULT_TRIALS,
    MAX_CONFIRM_ROUNDS,
    MAX_SEED,
    MAX_TIMEOUT_S,
    MAX_TRIALS,
    MIN_CONFIRM_ROUNDS,
    MIN_EVAL_TOKENS,
    OBJECTIVES,
)

if TYPE_CHECKING:
    from autotune.measure.selftest import SelfTestResult
    from autotune.plugins.backend import Availability

T = TypeVar("T")

EPILOG = f"""Units: sizes accept {SIZE_FORMS}. Durations accept {DURATION_FORMS}.
--latency is the p95 inter-token latency while decoding (time between generated tokens), at the start
of the context and at --depth; time to first token is separate (--ttft). With --clients or --prompts both
are per request under that load: p95 over every request's inter-token gaps, p95 of the requests' TTFTs."""


STORAGE_HELP = ("database of the studies and the measurement store (default: a SQLite file in the cache); a fleet of "
                "devices shares one PostgreSQL database: postgresql+psycopg://user:password@host:5432/dbname "
                "(pip install 'slm-autotune[postgres]'); the password is never written to profiles or output")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (with where to find help), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        # Always "autotune: error:", whichever subcommand: one shape of line for scripts to match.
        self.exit(2, f"autotune: error: {one_line(message)} (see `{self.prog} --help`)\n")


VALUE_FLAGS = ("--budget", "--latency", "--ttft", "--timeout", "--max-quality-loss", "--trials", "--patience",
               "--prompt-tokens", "--gen-tokens", "--context", "--depth", "--eval-tokens", "--confirm-rounds", "--seed",
               "--clients", "--held-out")
"""Options whose value may start with "-" (``-1GB``, ``-1``, ``-inf``): the value gets the option's own message."""


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """Keep ``--budget -1GB`` a value (argparse would read ``-1GB`` as an option) so it gets the budget's message.

    Only a single-dash token is joined: ``--budget --latency 50ms`` stays a missing value.
    """
    joined: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token in VALUE_FLAGS and following.startswith("-") and not following.startswith("--"):
            joined.append(f"{token}={following}")
            index += 2
            continue
        joined.append(token)
        index += 1
    return joined


def _typed(convert: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a converter: its ``InputError`` message reaches the user after the option's name.

    argparse shows the message of ``ArgumentTypeError`` only; for a ``ValueError`` it prints a generic
    "invalid value", which would hide what is accepted.
    """
    def argparse_type(text: str) -> T:
        try:
            return convert(text)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    argparse_type.__name__ = convert.__name__
    return argparse_type


def _add_question(parser: argparse.ArgumentParser, *, candidates: bool = False) -> None:
    """The options that say what is asked (model, budget, workload, backends, storage): shared by run and answer.

    ``candidates``: ``--model`` is repeatable (``run`` tunes several candidate models and chooses one).
    """
    several = ("; repeatable: each candidate model is tuned with its own --trials, then the one with the lowest bits "
               "per byte within every budget is chosen (a folder of .gguf files names each of them)") if candidates else ""
    parser.add_argument("--model", action="append" if candidates else "store",
                        help="a .gguf file, a model folder, or a bundled model: gemma3-270m (the default, "
                        f"Gemma 3 270M Q4_K_M) or smollm2-135m (SmolLM2-135M-Instruct Q4_1){several}")
    parser.add_argument("--budget", required=True, type=_typed(parse_size),
                        help="peak memory budget, e.g. 2GB (10^9 bytes) or 1.5GiB (2^30); at most 2^60 bytes")
    parser.add_argument("--latency", required=True, type=_typed(parse_duration),
                        help="p95 inter-token decode latency budget, e.g. 50ms; at most 3600s")
    parser.add_argument("--ttft", type=_typed(parse_duration),
                        help="time-to-first-token budget, e.g. 500ms; at most 3600s (default: none)")
    parser.add_argument("--max-quality-loss", type=_typed(run_options.quality_loss),
                        help="largest accepted mean KL divergence from the reference, e.g. 0.05 "
                        f"(0 to {run_options.MAX_QUALITY_LOSS:g})")
    parser.add_argument("--objective", choices=OBJECTIVES, default="quality",
                        help="what picks the winner among feasible configurations (default: quality)")
    parser.add_argument("--backend", action="append", default=[], help="tune only this backend (repeatable)")
    parser.add_argument("--prompt-tokens", type=_typed(run_options.prompt_tokens), default=None,
                        help="prompt tokens per timed run or request (default: 128, or the --prompts file's "
                        "median at 4 characters a token)")
    parser.add_argument("--gen-tokens", type=_typed(run_options.gen_tokens), default=None,
                        help=f"generated tokens per timed run or request, at least {run_options.MIN_GEN_TOKENS} "
                        "(default: 64, or the median max_tokens of the --prompts file)")
    parser.add_argument("--clients", type=_typed(run_options.clients), default=1,
                        help=f"clients sending requests at once, 1 to {run_options.MAX_CLIENTS}; more than 1 tunes "
                        "a server (llamacpp-server) under that load (default: 1, a single stream in-process)")
    parser.add_argument("--prompts", type=Path, help="the clients' own prompts: a text file (prompts separated by "
                        "blank lines) or JSONL ({\"prompt\": ...} or {\"messages\": [...]} a line, optional "
                        "\"max_tokens\"); tunes a server with them (default: slices of the evaluation text)")
    parser.add_argument("--held-out", type=_typed(run_options.held_out), default=None,
                        help="share of the --prompts kept to confirm and verify, never tuned on, e.g. 0.25 "
                        "(above 0, below 1; default: 0.25)")
    parser.add_argument("--context", type=_typed(run_options.context), default=2048,
                        help=f"context window in tokens, {run_options.MIN_CONTEXT} to {run_options.MAX_TOKENS} "
                        "(default: 2048)")
    parser.add_argument("--depth", type=_typed(run_options.depth), default=None,
                        help="KV depth where decode latency is also measured, 0 to context - gen tokens "
                        "(default: context - gen tokens; 0: start only)")
    parser.add_argument("--eval-text", type=Path, help="text to measure quality loss on (default: the bundled text)")
    parser.add_argument("--eval-tokens", type=_typed(run_options.eval_tokens), default=DEFAULT_EVAL_TOKENS,
                        help=f"tokens of it to use, at least {MIN_EVAL_TOKENS} (default: {DEFAULT_EVAL_TOKENS})")
    parser.add_argument("--no-quality", action="store_true", help="skip quality measurement (bits-per-weight proxy)")
    parser.add_argument("--storage", help=STORAGE_HELP)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = OneLineParser(prog="autotune", description="Measured deployment profiles for small language models.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction,
                        help="show autotune's version and the installed runtimes' versions, then exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = commands.add_parser("probe", help="show this machine's hardware facts")
    probe.add_argument("--json", action="store_true", help="print the facts as JSON")
    probe.add_argument("--refresh", action="store_true", help="re-probe instead of using the cached result")

    plugins = commands.add_parser("plugins", help="list plugins, their backends and whether each runs here (self-test)")
    plugins.add_argument("--json", action="store_true", help="print as JSON")
    plugins.add_argument("--refresh", action="store_true", help="run the backends' self-tests again instead of "
                         "using the results cached for this runtime build and machine, and forget which models "
                         "a backend refused before")
    plugins.add_argument("--check", action="store_true", help="exit with status 1 when an installed backend fails "
                         "its self-test (the set-up runs this)")

    run = commands.add_parser("run", help="tune a model within memory and latency budgets and write a profile",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_question(run, candidates=True)
    run.add_argument("--trials", type=_typed(run_options.trials), default=DEFAULT_TRIALS,
                     help=f"configurations to measure, 1 to {MAX_TRIALS} (default: {DEFAULT_TRIALS}); what the store holds "
                     "from runs with another budget, objective or backend set counts toward them")
    run.add_argument("--timeout", type=_typed(run_options.timeout), default="300s",
                     help=f"per-measurement timeout, {run_options.MIN_TIMEOUT_S:g}s to {MAX_TIMEOUT_S:g}s "
                     "(default: 300s)")
    run.add_argument("--confirm-rounds", type=_typed(run_options.confirm_rounds), default=5,
                     help=f"the most interleaved confirmation rounds, {MIN_CONFIRM_ROUNDS} to "
                     f"{MAX_CONFIRM_ROUNDS}; they stop after 3 once the decision is settled; 0 skips (default: 5)")
    run.add_argument("--strict", action="store_true", help="require the p95 interval's upper end within --latency")
    run.add_argument("--busy-share", type=_typed(run_options.busy_share), default=DEFAULT_BUSY_SHARE,
                     help="cores' worth of synthetic competing load the confirmation also measures under: 1 keeps one "
                     "core busy, 0.5 half of one, 0 none (default: 1; the chosen configuration and the rule of thumb)")
    run.add_argument("--under-load", action="store_true",
                     help="measure every finalist under that load in every confirmation round and choose on those "
                     "figures: the budget applies to the machine as it will be, busy")
    run.add_argument("--patience", type=_typed(run_options.patience), default=4,
                     help="stop after this many trials in a row that could not beat the best beyond the noise "
                     "(default: 4; 0: spend every --trials)")
    run.add_argument("--no-screening", action="store_true",
                     help="measure every configuration in full (default: one short screening run first)")
    run.add_argument("--seed", type=_typed(run_options.seed), default=0,
                     help=f"search seed, 0 to {MAX_SEED} (default: 0)")
    run.add_argument("--llama-server", type=_typed(run_options.llama_server), metavar="PATH",
                     help="the llama-server a served tune (--clients/--prompts) starts and its profile exports "
                     f"(default: ${run_options.LLAMA_SERVER_ENV}, else one built for this CPU on first need)")
    run.add_argument("--out", type=Path, default=Path("profiles"), help="folder for the profile (default: ./profiles)")
    run.add_argument("--json", action="store_true", help="print the profile JSON on stdout")

    answer = commands.add_parser("answer", help="what `run` would pick for a budget, from stored measurements only "
                                 "(nothing is measured)", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_question(answer)
    answer.add_argument("--json", action="store_true", help="print the answer as JSON")

    stored = commands.add_parser("store", help="list what the measurement store holds, per machine and model")
    stored.add_argument("--model", help="only this model (a path or a bundled name)")
    stored.add_argument("--all-machines", action="store_true", help="every machine's figures, not only this one's")
    stored.add_argument("--storage", help=STORAGE_HELP)
    stored.add_argument("--json", action="store_true", help="print as JSON")

    export = commands.add_parser("export", help="render a profile for another tool")
    export.add_argument("profile", type=Path)
    export.add_argument("--format", help="format name (omit to list the formats)")

    schema = commands.add_parser("schema", help="print (or --write) the profile JSON Schema")
    schema.add_argument("--write", type=Path, help="write to this file instead of printing")

    validate = commands.add_parser("validate", help="check a profile file against the schema")
    validate.add_argument("profile", type=Path)

    report = commands.add_parser("report", help="write a profile's answer and evidence as one self-contained HTML page")
    report.add_argument("profile", type=Path)
    report.add_argument("--html", type=Path, help="the page to write (default: beside the profile, .html for .json)")

    verify = commands.add_parser("verify", help="start a profile's deployment again and say whether its figures hold "
                                 "(exit 0: they hold, 1: they do not)")
    verify.add_argument("profile", type=Path)
    verify.add_argument("--rounds", type=_typed(verify_options.rounds), default=3,
                        help="measurement rounds, 1 to 10 (default: 3)")
    verify.add_argument("--requests", type=_typed(verify_options.requests), default=None,
                        help="requests a round for a served profile, 1 to 10000 (default: as the measurement, two per "
                        "client and at least 4)")
    verify.add_argument("--no-speculation-check", action="store_true",
                        help="skip comparing greedy outputs with and without speculation (speculative profiles)")
    verify.add_argument("--json", action="store_true", help="print the verification as JSON")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Read the command line as ``main`` does; a bad option exits (status 2) after printing one line."""
    return build_parser().parse_args(_join_negative_values(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autotune`` console script."""
    logging.basicConfig(format="autotune: warning: %(message)s", level=logging.WARNING)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit:  # argparse has printed its one line (or the help): return its status like any other
        return exit.code if isinstance(exit.code, int) else 2
    if getattr(args, "llama_server", None) is not None:  # the plugin and the workers read it from the environment
        os.environ[run_options.LLAMA_SERVER_ENV] = str(args.llama_server)
    try:
        with interrupted_by_termination():
            status = COMMANDS[args.command](args)
            sys.stdout.flush()  # inside the try: a reader that closed the pipe is handled below, not at exit
        return status
    except BrokenPipeError:
        # `autotune export p.json | head -1`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's last flush cannot raise again, and end as quietly as `cat` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except AutotuneError as error:
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        print(f"autotune: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except ValidationError as error:
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        print(f"autotune: error: {one_line(f'{where}: {message}' if where else message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        print("autotune: interrupted; finished trials are saved and the one in flight is not counted — rerun the "
              "same command to continue" if args.command == "run" else "autotune: interrupted", file=sys.stderr)
        return 128 + (interruption.args[0] if interruption.args and isinstance(interruption.args[0], int)
                      else signal.SIGINT)


@contextmanager
def interrupted_by_termination() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP stop a command as Ctrl-C does (``KeyboardInterrupt``, with the signal's
    number), so a run stopped by a service manager or a closed terminal ends its trial as interrupted and releases
    what it holds, instead of dying in the middle of it."""
    def stop(number: int, frame: object) -> None:
        raise KeyboardInterrupt(number)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    numbers = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {number: signal.signal(number, stop) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def cmd_probe(args: argparse.Namespace) -> int:
    from autotune.plugins.manager import get_plugin_manager
    from autotune.probe.machine import probe, render_hardware

    hardware = probe(get_plugin_manager(), refresh=args.refresh)
    print(hardware.model_dump_json(indent=2) if args.json else render_hardware(hardware))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from autotune.measure.selftest import usable_all
    from autotune.plugins.manager import get_plugin_manager
    from autotune.probe.machine import probe_here

    manager = get_plugin_manager()
    backends = manager.backends()
    if args.refresh:  # refusals remembered per model are knowledge about backends too: ask them again
        import shutil

        from autotune.store.cache import cache_dir

        shutil.rmtree(cache_dir() / "refusals", ignore_errors=True)
    # Self-tests always concern this machine, whatever hardware description the environment names.
    checks = usable_all(list(backends.values()), probe_here(manager, measure_bandwidth=False), refresh=args.refresh)
    crashed = [name for name, (_, test) in checks.items() if test is not None and test.passed is False]
    if args.json:
        rows = [{**asdict(record), "backends": [
                    {"name": b, **asdict(checks[b][0]), "self_test": asdict(test) if (test := checks[b][1]) else None}
                    for b in record.backends if b in checks]}
                for record in manager.records.values()]
        print(json.dumps({"plugins": rows, "warnings": manager.warnings}, indent=2))
    else:
        for record in manager.records.values():
            status = f"  [failed: {record.error}]" if record.error else ""
            print(f"{record.name} {record.version or ''}{' (built-in)' if record.builtin else ''}{status}")
            for name in record.backends:
                if name in checks:
                    print(f"    backend {name}: {_backend_state(*checks[name])}")
        print("exporters: " + ", ".join(sorted(manager.exporters())))
    if args.check and crashed:
        print(f"autotune: error: the self-test of {', '.join(crashed)} failed on this machine (see above for why and "
              "what to do)", file=sys.stderr)
        return 1
    return 0


def _backend_state(availability: Availability, test: SelfTestResult | None) -> str:
    """One line: unavailable and why, or available with what its self-test ran."""
    if not availability.available:
        return f"UNAVAILABLE: {availability.reason}"
    if test is None or test.passed is None:
        return f"available ({availability.version}; no self-test)"
    cached = ", cached" if test.cached else ""
    return f"available ({availability.version}); self-test passed: {test.summary} ({test.seconds:.1f} s{cached})"


def cmd_run(args: argparse.Namespace) -> int:
    checked = run_options.check_run_options(args)  # every option, before anything is probed or measured
    from autotune.cli.run import run_command

    return run_command(args, checked.budget, checked.workload, checked.timeout_s)


def cmd_answer(args: argparse.Namespace) -> int:
    checked = run_options.check_question(args)
    from autotune.cli.store_commands import answer_command

    return answer_command(args, checked.budget, checked.workload)


def cmd_store(args: argparse.Namespace) -> int:
    run_options.check_model(args.model)
    from autotune.cli.store_commands import store_command

    return store_command(args)


def cmd_export(args: argparse.Namespace) -> int:
    from autotune.plugins.boundary import checked
    from autotune.plugins.manager import get_plugin_manager
    from autotune.profile.reading import load_profile

    manager = get_plugin_manager()
    # The same checks as `autotune validate` (params included), so what validates exports.
    profile = load_profile(args.profile, manager.backends())
    exporters = {n: e for n, e in manager.exporters().items() if e.applies_to(profile.backend.name)}
    if not args.format:
        for name, exporter in sorted(exporters.items()):
            print(f"{name}: {exporter.description}")
        return 0
    if args.format not in exporters:
        raise AutotuneError(f"no exporter {args.format!r} for a {profile.backend.name} profile; "
                            f"choose one of: {', '.join(sorted(exporters))}")
    try:
        text = checked(exporters[args.format].render(profile), str, f"exporter {args.format!r} render()")
    except AutotuneError:
        raise
    except Exception as error:  # noqa: BLE001 - a plugin's exporter bug is one line, not a traceback
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        raise AutotuneError(f"exporter {args.format!r} could not render {args.profile}: {error!r}; "
                            "check the profile with `autotune validate`, or report it to the exporter's plugin") from None
    print(text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from autotune.profile.schema import schema_text

    if args.write:
        try:
            args.write.write_text(schema_text())
        except OSError as error:
            raise InputError(f"cannot write the schema to {str(args.write)!r}: {error.strerror or error}; "
                             "name a file in an existing folder with --write FILE") from None
    else:
        print(schema_text(), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autotune.cli.report import report_command

    return report_command(args)


def cmd_verify(args: argparse.Namespace) -> int:
    from autotune.cli.verify import verify_command

    return verify_command(args)


def cmd_validate(args: argparse.Namespace) -> int:
    from autotune.plugins.manager import get_plugin_manager
    from autotune.profile.params import params_unchecked
    from autotune.profile.reading import load_profile

    backends = get_plugin_manager().backends()
    profile = load_profile(args.profile, backends)
    unchecked = params_unchecked(profile.backend.name, backends)
    params = f"params not checked: {unchecked}" if unchecked else "params checked"
    print(one_line(f"{args.profile}: valid autotune profile (schema {profile.schema_version}, "
                   f"backend {profile.backend.name}, {params})"))
    return 0


COMMANDS = {"probe": cmd_probe, "plugins": cmd_plugins, "run": cmd_run, "answer": cmd_answer, "store": cmd_store,
            "export": cmd_export,
            "schema": cmd_schema, "validate": cmd_validate, "report": cmd_report, "verify": cmd_verify}

if __name__ == "__main__":
    sys.exit(main())
