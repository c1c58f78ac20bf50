"""What each ``autotune run`` option accepts, all checked before anything is measured.

Single values are read by the converters below, which the command line uses as argparse types (so
argparse names the option in the message); ``check_run_options`` then checks what spans several
options or touches the file system, and builds the budget and the workload.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from autotune.budget import MAX_QUALITY_LOSS as MAX_QUALITY_LOSS
from autotune.budget import Budget, parse_quality_loss
from autotune.errors import AutotuneError, InputError
from autotune.model.bundled import BUNDLED
from autotune.numbers import parse_duration, parse_real, parse_whole, quoted
from autotune.options import (
    MAX_CONFIRM_ROUNDS,
    MAX_SEED,
    MAX_TIMEOUT_S,
    MAX_TRIALS,
    MIN_CONFIRM_ROUNDS,
    MIN_EVAL_TOKENS,
)
from autotune.workload import PromptsFile, Workload

MAX_TOKENS = 2**20
"""A million-token context: beyond any small model's window, so a larger count is a typo."""
MIN_GEN_TOKENS = 2
"""Inter-token latency needs at least two generated tokens."""
MIN_CONTEXT = 16
MIN_TIMEOUT_S = 1.0
MAX_CLIENTS = 256
"""More concurrent clients than a CPU server has slots for (llama-server's -np is bounded alike)."""
DEFAULT_PROMPT_TOKENS = 128
DEFAULT_GEN_TOKENS = 64
LLAMA_SERVER_ENV = "AUTOTUNE_LLAMA_SERVER"
"""What ``--llama-server`` sets for this process and its workers: the variable the llama.cpp plugin reads."""


def trials(text: str) -> int:
    """``--trials``: new configurations to measure."""
    return parse_whole(text, at_least=1, at_most=MAX_TRIALS, example="20")


def patience(text: str) -> int:
    """``--patience``: trials in a row that may fail to beat the best before the search stops (0: never stop)."""
    return parse_whole(text, at_least=0, at_most=MAX_TRIALS, example="4")


def prompt_tokens(text: str) -> int:
    """``--prompt-tokens``: tokens prefilled per timed run."""
    return parse_whole(text, at_least=1, at_most=MAX_TOKENS, example="128")


def gen_tokens(text: str) -> int:
    """``--gen-tokens``: tokens generated per timed run."""
    return parse_whole(text, at_least=MIN_GEN_TOKENS, at_most=MAX_TOKENS, example="64")


def context(text: str) -> int:
    """``--context``: the context window in tokens."""
    return parse_whole(text, at_least=MIN_CONTEXT, at_most=MAX_TOKENS, example="2048")


def clients(text: str) -> int:
    """``--clients``: clients sending requests at once."""
    return parse_whole(text, at_least=1, at_most=MAX_CLIENTS, example="4")


def held_out(text: str) -> float:
    """``--held-out``: the share of the prompts kept to confirm (above 0, below 1)."""
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0 < share < 1:
        raise InputError(f"expected a share above 0 and below 1 (e.g. 0.25), got {quoted(text)}")
    return share


def depth(text: str) -> int:
    """``--depth``: KV depth where decode latency is also measured (0: at the start only)."""
    return parse_whole(text, at_least=0, at_most=MAX_TOKENS, example="1024")


def eval_tokens(text: str) -> int:
    """``--eval-tokens``: tokens of the evaluation text scored for quality."""
    return parse_whole(text, at_least=MIN_EVAL_TOKENS, at_most=MAX_TOKENS, example="1024")


def seed(text: str) -> int:
    """``--seed``: the search seed."""
    return parse_whole(text, at_least=0, at_most=MAX_SEED, example="0")


def confirm_rounds(text: str) -> int:
    """``--confirm-rounds``: 0 skips the confirmation; otherwise at least ``MIN_CONFIRM_ROUNDS``."""
    accepted = f"expected 0 (no confirmation) or {MIN_CONFIRM_ROUNDS} to {MAX_CONFIRM_ROUNDS} rounds (e.g. 5)"
    try:
        rounds = parse_whole(text, at_least=0, at_most=MAX_CONFIRM_ROUNDS, example="5")
    except InputError:
        raise InputError(f"{accepted}, got {quoted(text)}") from None
    if 0 < rounds < MIN_CONFIRM_ROUNDS:
        raise InputError(f"{accepted}, got {quoted(text)}: fewer rounds give no usable confidence interval")
    return rounds


def busy_share(text: str) -> float:
    """``--busy-share``: cores' worth of synthetic competing load (0: none), at most the cores autotune may use."""
    from autotune.measure.busy import measured_cores

    cores = len(measured_cores())
    return parse_real(text, at_least=0, at_most=cores, example="0.5 for half a core, 1 for a whole one")


def timeout(text: str) -> float:
    """``--timeout``: seconds one measurement may take."""
    return parse_duration(text, at_least=MIN_TIMEOUT_S, at_most=MAX_TIMEOUT_S)


def llama_server(text: str) -> Path:
    """``--llama-server``: an executable file, the llama-server a served tune or a verification starts."""
    path = Path(text).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        what = "does not exist" if not path.exists() else "is not an executable file"
        raise InputError(f"{_shown(text)} {what}; name a llama-server binary (or leave the option out: autotune "
                         "builds one for this CPU on first need)")
    return path.resolve()


def quality_loss(text: str) -> float:
    """``--max-quality-loss``: the largest accepted mean KL divergence, 0 to ``MAX_QUALITY_LOSS``."""
    return parse_quality_loss(text)


@dataclass(frozen=True)
class CheckedQuestion:
    """The budget and workload a question is about, built from checked options."""

    budget: Budget
    workload: Workload


@dataclass(frozen=True)
class CheckedRun:
    """What ``autotune run`` measures against, built from options that have all been checked."""

    budget: Budget
    workload: Workload
    timeout_s: float


def check_run_options(args: argparse.Namespace) -> CheckedRun:
    """Check what spans options or names files, and build the budget and workload; raise ``InputError`` naming the option.

    ``args`` comes from the ``run`` parser, whose types have already read and bounded each number.
    Nothing is created or measured here: the ``--out`` folder is only made once the run starts.
    """
    question = check_question(args)
    _check_out(args.out)
    if getattr(args, "under_load", False) and (args.busy_share == 0 or args.confirm_rounds == 0):
        raise InputError("--under-load measures the finalists under a competing load in the confirmation rounds: "
                         "give it --busy-share above 0 and --confirm-rounds above 0")
    return CheckedRun(budget=question.budget, workload=question.workload, timeout_s=args.timeout)


def check_question(args: argparse.Namespace) -> CheckedQuestion:
    """The options ``run`` and ``answer`` share (model, budget, workload, evaluation text), checked and built."""
    workload = _workload(args)
    budget = Budget(
        memory_bytes=args.budget,
        latency_ms=args.latency * 1000,
        ttft_ms=args.ttft * 1000 if args.ttft is not None else None,
        max_quality_loss=args.max_quality_loss,
    )
    for model in args.model if isinstance(args.model, list) else [args.model]:  # run: a list of candidates
        check_model(model)
    if args.eval_text is not None:
        _check_eval_text(args.eval_text)
    return CheckedQuestion(budget=budget, workload=workload)


def _workload(args: argparse.Namespace) -> Workload:
    """The workload, once the token counts fit together (pydantic's own messages would not name the options).

    With ``--prompts`` the file is read now (a bad one is refused before anything runs); the token counts not
    given come from it (``traffic.typical_tokens``), else from the defaults.
    """
    prompts = _prompts(args)
    from_file: tuple[int | None, int | None] = (None, None)
    if prompts is not None:
        from autotune.serve.traffic import typical_tokens, workload_traffic

        from_file = typical_tokens(workload_traffic(prompts).tuning)
    prompt = args.prompt_tokens or from_file[0] or DEFAULT_PROMPT_TOKENS
    gen = args.gen_tokens or max(from_file[1] or DEFAULT_GEN_TOKENS, MIN_GEN_TOKENS)
    window = args.context
    if prompt + gen > window:
        told = "" if args.prompt_tokens else " (the --prompts file's median prompt)" if prompts else ""
        raise InputError(f"--prompt-tokens {prompt}{told} + --gen-tokens {gen} exceed the context (--context {window}); "
                         "raise --context or lower --prompt-tokens/--gen-tokens")
    # A deeper --depth used to be clamped silently; a measurement at another depth than asked is refused instead.
    if args.depth is not None and args.depth > window - gen:
        raise InputError(f"--depth {args.depth} leaves no room to generate --gen-tokens {gen} within --context "
                         f"{window}: use a --depth from 0 to {window - gen}, or raise --context")
    return Workload(prompt_tokens=prompt, gen_tokens=gen, context=window, depth=args.depth,
                    concurrency=getattr(args, "clients", 1), prompts=prompts)


def _prompts(args: argparse.Namespace) -> PromptsFile | None:
    """``--prompts`` described by content (``--held-out`` of it kept to confirm); ``InputError`` for a bad file."""
    path: Path | None = getattr(args, "prompts", None)
    share: float | None = getattr(args, "held_out", None)
    if path is None:
        if share is not None:
            raise InputError("--held-out needs --prompts: it is the share of that file kept to confirm")
        return None
    from autotune.serve.traffic import HELD_OUT_SHARE, describe_prompts

    try:
        # Read now through files.read_bounded (regular file, bounded size): each failure is one line naming the file.
        return describe_prompts(path.expanduser(), share if share is not None else HELD_OUT_SHARE)
    except RuntimeError:  # expanduser: "~name" of a user this machine does not know
        raise InputError(f"--prompts {_shown(path)}: no such user's home folder") from None
    except AutotuneError as error:
        raise InputError(f"--prompts: {error}; pass a UTF-8 text file (prompts separated by blank lines) "
                         "or JSONL") from None


def _shown(path: Path | str) -> str:
    """A path for a message: quoted and escaped, so odd characters cannot break the line."""
    return quoted(str(path), limit=200)


def check_model(argument: str | None) -> None:
    """``--model`` names a bundled model, or an existing readable file or folder."""
    if argument is None or argument in BUNDLED:
        return
    accepted = f"pass a .gguf file, a model folder, or one of: {', '.join(BUNDLED)}"
    if not argument.strip():
        raise InputError(f"--model is empty: {accepted}")
    try:
        path = Path(argument).expanduser()
        mode = path.stat().st_mode
    except RuntimeError:  # expanduser: "~name" of a user this machine does not know
        raise InputError(f"--model {_shown(argument)}: no such user's home folder; {accepted}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"--model: model not found: {_shown(argument)}; {accepted}") from None
    except ValueError:  # an embedded NUL byte
        raise InputError(f"--model {_shown(argument)} is not a valid path; {accepted}") from None
    except OSError as error:
        raise InputError(f"--model {_shown(argument)}: {error.strerror or error}; {accepted}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"--model {_shown(argument)} is not a regular file or folder; {accepted}")
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        raise InputError(f"--model {_shown(argument)} is not readable (permission denied); {accepted}")


def _check_eval_text(path: Path) -> None:
    """``--eval-text`` is a readable, non-empty UTF-8 text file."""
    from autotune.measure.quality import load_eval_text

    accepted = "pass a UTF-8 text file of a few thousand words"
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"--eval-text: file not found: {_shown(path)}; {accepted}") from None
    except ValueError:
        raise InputError(f"--eval-text {_shown(path)} is not a valid path; {accepted}") from None
    except OSError as error:
        raise InputError(f"--eval-text {_shown(path)}: {error.strerror or error}; {accepted}") from None
    if not stat.S_ISREG(mode):
        # A folder, FIFO or device: reading a FIFO would block the run instead of failing it.
        raise InputError(f"--eval-text {_shown(path)} is not a regular file; {accepted}")
    try:
        load_eval_text(path)  # read now: a file that is not UTF-8 or empty fails before the first trial
    except AutotuneError as error:
        raise InputError(f"--eval-text: {error}") from None
    except OSError as error:
        raise InputError(f"--eval-text {_shown(path)}: {error.strerror or error}; {accepted}") from None


def _check_out(out: Path) -> None:
    """``--out`` is a folder, or can be created as one (without creating it: nothing is written before the run)."""
    accepted = "name a folder for the profile (it is created if missing)"
    if "\0" in str(out):  # pathlib's exists() answers False for it, instead of failing
        raise InputError(f"--out {_shown(out)} is not a valid path (it holds a NUL byte); {accepted}")
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {_shown(out)} is a file, not a folder; {accepted}")
        existing = next(p for p in (out, *out.parents) if p.exists())  # "." always exists for a relative path
    except OSError as error:
        raise InputError(f"--out {_shown(out)}: {error.strerror or error}; {accepted}") from None
    if not existing.is_dir():
        raise InputError(f"--out {_shown(out)} cannot be created: {_shown(existing)} is a file, not a folder; {accepted}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {_shown(out)} cannot be written: no permission in {_shown(existing)}; {accepted}")
