"""The ``autotune`` command: thin wrappers over the library; known errors become one line.

Set ``AUTOTUNE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from pydantic import ValidationError

from .budget import DURATION_FORMS, SIZE_FORMS, Budget, parse_duration
from .errors import AutotuneError

EPILOG = f"""Units: sizes accept {SIZE_FORMS}. Durations accept {DURATION_FORMS}.
--latency is the p95 inter-token latency while decoding (time between generated tokens), at the start
of the context and at --depth; time to first token is separate (--ttft)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (with where to find help), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


VALUE_FLAGS = ("--budget", "--latency", "--ttft", "--timeout")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """Keep ``--budget -1GB`` a value (argparse would read ``-1GB`` as an option) so it gets the budget's message."""
    joined: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in VALUE_FLAGS and index + 1 < len(tokens) and tokens[index + 1].startswith("-"):
            joined.append(f"{token}={tokens[index + 1]}")
            index += 2
            continue
        joined.append(token)
        index += 1
    return joined


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = OneLineParser(prog="autotune", description="Measured deployment profiles for small language models.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    probe = commands.add_parser("probe", help="show this machine's hardware facts")
    probe.add_argument("--json", action="store_true", help="print the facts as JSON")
    probe.add_argument("--refresh", action="store_true", help="re-probe instead of using the cached result")

    plugins = commands.add_parser("plugins", help="list plugins, their backends and whether each is available")
    plugins.add_argument("--json", action="store_true", help="print as JSON")

    run = commands.add_parser("run", help="tune a model within memory and latency budgets and write a profile",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--model", help="a .gguf file, a model folder, or a bundled model: gemma3-270m (the default, "
                     "Gemma 3 270M Q4_K_M) or smollm2-135m (SmolLM2-135M-Instruct Q4_1)")
    run.add_argument("--budget", required=True, help="peak memory budget, e.g. 2GB (10^9 bytes) or 1.5GiB (2^30)")
    run.add_argument("--latency", required=True, help="p95 inter-token decode latency budget, e.g. 50ms")
    run.add_argument("--ttft", help="time-to-first-token budget, e.g. 500ms (default: none)")
    run.add_argument("--max-quality-loss", type=float, help="largest accepted mean KL divergence from the reference")
    run.add_argument("--objective", choices=("quality", "latency", "memory"), default="quality",
                     help="what picks the winner among feasible configurations (default: quality)")
    run.add_argument("--backend", action="append", default=[], help="tune only this backend (repeatable)")
    run.add_argument("--trials", type=_positive_int, default=10, help="new configurations to measure (default: 10)")
    run.add_argument("--timeout", default="300s", help="per-measurement timeout (default: 300s)")
    run.add_argument("--prompt-tokens", type=_positive_int, default=128, help="prompt tokens per timed run (default: 128)")
    run.add_argument("--gen-tokens", type=_positive_int, default=64, help="generated tokens per timed run (default: 64)")
    run.add_argument("--context", type=_positive_int, default=2048, help="context window in tokens (default: 2048)")
    run.add_argument("--depth", type=int, default=None,
                     help="KV depth where decode latency is also measured (default: context - gen tokens; 0: start only)")
    run.add_argument("--eval-text", type=Path, help="text to measure quality loss on (default: the bundled text)")
    run.add_argument("--eval-tokens", type=_positive_int, default=1024, help="tokens of it to use (default: 1024)")
    run.add_argument("--no-quality", action="store_true", help="skip quality measurement (bits-per-weight proxy)")
    run.add_argument("--confirm-rounds", type=int, default=5, help="interleaved confirmation rounds (≥5; 0 skips)")
    run.add_argument("--strict", action="store_true", help="require the p95 interval's upper end within --latency")
    run.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    run.add_argument("--out", type=Path, default=Path("profiles"), help="folder for the profile (default: ./profiles)")
    run.add_argument("--storage", help="Optuna storage URL (default: a SQLite file in the cache; resumable)")
    run.add_argument("--json", action="store_true", help="print the profile JSON on stdout")

    export = commands.add_parser("export", help="render a profile for another tool")
    export.add_argument("profile", type=Path)
    export.add_argument("--format", help="format name (omit to list the formats)")

    schema = commands.add_parser("schema", help="print (or --write) the profile JSON Schema")
    schema.add_argument("--write", type=Path, help="write to this file instead of printing")

    validate = commands.add_parser("validate", help="check a profile file against the schema")
    validate.add_argument("profile", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autotune`` console script."""
    logging.basicConfig(format="autotune: warning: %(message)s", level=logging.WARNING)
    # Converters (transformers, the genai builder) would draw progress bars and look for a hub; neither helps here.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        return COMMANDS[args.command](args)
    except AutotuneError as error:
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        print(f"autotune: error: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        if os.environ.get("AUTOTUNE_DEBUG"):
            raise
        first = error.errors()[0]
        print(f"autotune: error: {first['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotune: interrupted; finished trials are saved — rerun the same command to continue", file=sys.stderr)
        return 130


def cmd_probe(args: argparse.Namespace) -> int:
    from .plugins import get_plugin_manager
    from .probe import probe, render_hardware

    hardware = probe(get_plugin_manager(), refresh=args.refresh)
    print(hardware.model_dump_json(indent=2) if args.json else render_hardware(hardware))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import get_plugin_manager

    manager = get_plugin_manager()
    backends = manager.backends()
    rows = []
    for record in manager.records.values():
        rows.append({
            "name": record.name, "module": record.module, "version": record.version, "builtin": record.builtin,
            "error": record.error,
            "backends": [{"name": b, **_availability(backends[b])} for b in record.backends if b in backends],
        })
    if args.json:
        print(json.dumps({"plugins": rows, "warnings": manager.warnings}, indent=2))
        return 0
    for row in rows:
        status = f"  [failed: {row['error']}]" if row["error"] else ""
        print(f"{row['name']} {row['version'] or ''}{' (built-in)' if row['builtin'] else ''}{status}")
        for backend in row["backends"]:
            state = f"available ({backend['version']})" if backend["available"] else f"unavailable: {backend['reason']}"
            print(f"    backend {backend['name']}: {state}")
    exporters = manager.exporters()
    print("exporters: " + ", ".join(sorted(exporters)))
    return 0


def _availability(backend: object) -> dict[str, object]:
    try:
        a = backend.availability()  # type: ignore[attr-defined]
        return {"available": a.available, "reason": a.reason, "version": a.version, "details": a.details}
    except Exception as error:  # noqa: BLE001 - a broken backend is reported, not fatal
        return {"available": False, "reason": f"availability check raised {error!r}", "version": None, "details": {}}


def cmd_run(args: argparse.Namespace) -> int:
    budget = Budget.parse(args.budget, args.latency, args.ttft, args.max_quality_loss)
    timeout_s = parse_duration(args.timeout)
    from .workload import Workload

    workload = Workload(prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, context=args.context,
                        depth=args.depth)
    from .run import run_command

    return run_command(args, budget, workload, timeout_s)


def cmd_export(args: argparse.Namespace) -> int:
    from .plugins import get_plugin_manager
    from .profile import load_profile

    profile = load_profile(args.profile)
    exporters = {n: e for n, e in get_plugin_manager().exporters().items() if e.applies_to(profile.backend.name)}
    if not args.format:
        for name, exporter in sorted(exporters.items()):
            print(f"{name}: {exporter.description}")
        return 0
    if args.format not in exporters:
        raise AutotuneError(f"no exporter {args.format!r} for a {profile.backend.name} profile; "
                            f"choose one of: {', '.join(sorted(exporters))}")
    print(exporters[args.format].render(profile))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .profile import schema_text

    if args.write:
        args.write.write_text(schema_text())
    else:
        print(schema_text(), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .profile import load_profile

    profile = load_profile(args.profile)
    print(f"{args.profile}: valid autotune profile (schema {profile.schema_version}, backend {profile.backend.name})")
    return 0


COMMANDS = {"probe": cmd_probe, "plugins": cmd_plugins, "run": cmd_run, "export": cmd_export,
            "schema": cmd_schema, "validate": cmd_validate}

if __name__ == "__main__":
    sys.exit(main())
