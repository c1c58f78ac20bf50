"""Every bad ``autotune run`` option gets exit status 2 and one line naming the option, before anything is measured."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autotune.cli.run
from autotune.cli.main import main, parse_args
from autotune.cli.run import prepare_out
from autotune.cli.run_options import check_run_options
from autotune.errors import InputError

BUDGETS = ["--budget", "2GB", "--latency", "50ms"]


@pytest.fixture(autouse=True)
def nothing_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad options must fail before the hardware is even probed: probing fails the test."""
    def probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hardware was probed before the options were checked")

    monkeypatch.setattr(autotune.cli.run, "probe", probe)


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI in-process; assert exit status 2 and exactly one error line, and return it."""
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("autotune: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("args, option, accepted", [
    (["--context", "1"], "--context", "16 to"),
    (["--context", "99999999"], "--context", "to 1048576"),
    (["--max-quality-loss", "nan"], "--max-quality-loss", "0 to 100"),
    (["--max-quality-loss", "inf"], "--max-quality-loss", "0 to 100"),
    (["--max-quality-loss", "-inf"], "--max-quality-loss", "0 to 100"),
    (["--max-quality-loss", "1e400"], "--max-quality-loss", "0 to 100"),
    (["--max-quality-loss", "-0.1"], "--max-quality-loss", "0 to 100"),
    (["--depth", "-1"], "--depth", "0 to"),
    (["--depth", "5000"], "--depth", "0 to 1984"),
    (["--confirm-rounds", "2"], "--confirm-rounds", "5 to 100"),
    (["--confirm-rounds", "-1"], "--confirm-rounds", "5 to 100"),
    (["--confirm-rounds", "1000"], "--confirm-rounds", "5 to 100"),
    (["--trials", "0"], "--trials", "1 to 10000"),
    (["--trials", "1e3"], "--trials", "1 to 10000"),
    (["--trials", "٣"], "--trials", "1 to 10000"),
    (["--trials", "1_000"], "--trials", "1 to 10000"),
    (["--timeout", "0s"], "--timeout", "50ms"),
    (["--timeout", "0.5s"], "--timeout", "1s to 86400s"),
    (["--timeout", "300"], "--timeout", "50ms"),
    (["--timeout", "9" * 500 + "s"], "--timeout", "50ms"),
    (["--prompt-tokens", "0"], "--prompt-tokens", "1 to"),
    (["--prompt-tokens", "4000", "--context", "2048"], "--prompt-tokens", "raise --context"),
    (["--gen-tokens", "1"], "--gen-tokens", "2 to"),
    (["--eval-tokens", "3"], "--eval-tokens", "64 to"),
    (["--seed", "-1"], "--seed", "0 to 4294967295"),
    (["--seed", "4294967296"], "--seed", "0 to 4294967295"),
    (["--seed", "x"], "--seed", "0 to 4294967295"),
    (["--ttft", "0ms"], "--ttft", "50ms"),
    (["--ttft", "2h"], "--ttft", "50ms"),
    (["--objective", "speed"], "--objective", "quality"),
])
def test_bad_numbers_name_the_option_and_what_is_accepted(capsys: pytest.CaptureFixture[str], args: list[str],
                                                          option: str, accepted: str) -> None:
    line = error_line(capsys, ["run", *BUDGETS, *args])
    assert option in line and accepted in line, line


@pytest.mark.parametrize("budget, latency, option, expected", [
    ("9" * 9998 + "GB", "50ms", "--budget", "too long"),
    ("99999999999999999999GB", "50ms", "--budget", "at most 2^60 bytes"),
    ("2 GB", "50ms", "--budget", "as 2GB"),
    ("-1GB", "50ms", "--budget", "cannot be negative"),
    ("2GB", "9" * 400 + "ms", "--latency", "too long"),
    ("2GB", "3601s", "--latency", "to 3600s"),
    ("2GB", "50 ms", "--latency", "as 50ms"),
    ("2GB", "nanms", "--latency", "50ms"),
    ("2GB", "-inf", "--latency", "50ms"),
])
def test_bad_budgets_name_the_option(capsys: pytest.CaptureFixture[str], budget: str, latency: str, option: str,
                                     expected: str) -> None:
    line = error_line(capsys, ["run", "--budget", budget, "--latency", latency])
    assert option in line and expected in line, line


def test_missing_budget_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(capsys, ["run", "--latency", "50ms"])
    assert "--budget" in line


def test_a_control_character_cannot_split_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(capsys, ["run", *BUDGETS, "--trials", "1\n2"])
    assert "--trials" in line and "\\n" in line


@pytest.mark.parametrize("model, expected", [
    ("", "empty"),
    ("~no-such-user-here/model.gguf", "home folder"),
    ("a\0b.gguf", "not a valid path"),
    ("/dev/null", "not a regular file or folder"),
    ("x" * 5000 + ".gguf", "too long"),
])
def test_odd_model_paths_are_one_line(capsys: pytest.CaptureFixture[str], model: str, expected: str) -> None:
    line = error_line(capsys, ["run", *BUDGETS, "--model", model])
    assert "--model" in line and expected in line.lower() and "gemma3-270m" in line, line


def test_a_missing_model_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = error_line(capsys, ["run", *BUDGETS, "--model", str(tmp_path / "nope.gguf")])
    assert "--model" in line and "model not found" in line


def test_eval_text_is_checked_up_front(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary, empty = tmp_path / "binary.txt", tmp_path / "empty.txt"
    binary.write_bytes(b"\xff\xfe\x00\x9c" * 100)
    empty.write_text("   \n")
    for path, expected in [(tmp_path / "missing.txt", "not found"), (tmp_path, "not a regular file"),
                           (binary, "not UTF-8"), (empty, "empty")]:
        line = error_line(capsys, ["run", *BUDGETS, "--eval-text", str(path)])
        assert "--eval-text" in line and expected in line, line


def test_out_naming_an_existing_file_fails_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    existing = tmp_path / "profile.json"
    existing.write_text("{}")
    line = error_line(capsys, ["run", *BUDGETS, "--out", str(existing)])
    assert "--out" in line and "is a file, not a folder" in line
    line = error_line(capsys, ["run", *BUDGETS, "--out", str(existing / "profiles")])
    assert "--out" in line and "cannot be created" in line


def test_an_out_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(InputError, match="--out .* cannot be created"):
        prepare_out(blocker / "profiles", "model-abc")
    (tmp_path / "out" / "model-abc.json").mkdir(parents=True)
    with pytest.raises(InputError, match="--out .*model-abc.json"):
        prepare_out(tmp_path / "out", "model-abc")


def test_good_options_are_checked_without_creating_anything(tmp_path: Path) -> None:
    out = tmp_path / "new" / "profiles"
    args = parse_args(["run", "--budget", "1.5GiB", "--latency", "20ms", "--ttft", "0.5s", "--max-quality-loss", "5e-2",
                       "--context", "512", "--prompt-tokens", "64", "--gen-tokens", "16", "--depth", "0",
                       "--confirm-rounds", "0", "--seed", "4294967295", "--timeout", "30s", "--out", str(out)])
    checked = check_run_options(args)
    assert checked.budget.memory_bytes == int(1.5 * 2**30) and checked.budget.latency_ms == pytest.approx(20)
    assert checked.budget.ttft_ms == pytest.approx(500) and checked.budget.max_quality_loss == pytest.approx(0.05)
    assert checked.workload.context == 512 and checked.workload.depth == 0 and checked.timeout_s == 30
    assert args.confirm_rounds == 0 and args.seed == 2**32 - 1
    assert not out.exists()


def test_defaults_pass_the_checks() -> None:
    checked = check_run_options(parse_args(["run", *BUDGETS]))
    assert checked.timeout_s == 300 and checked.workload.context == 2048


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_DEBUG", "1")
    with pytest.raises(InputError, match="--depth"):
        main(["run", *BUDGETS, "--depth", "5000"])


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    assert "--confirm-rounds" in capsys.readouterr().out


NUMBER_OPTIONS = ["--budget", "--latency", "--ttft", "--max-quality-loss", "--trials", "--timeout", "--prompt-tokens",
                  "--gen-tokens", "--context", "--depth", "--eval-tokens", "--confirm-rounds", "--seed"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMBER_OPTIONS),
       value=st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9]{0,30}(\.[0-9]{0,5})?[a-zA-Z]{0,3}", fullmatch=True)))
def test_any_value_of_any_number_option_is_accepted_or_named(capsys: pytest.CaptureFixture[str], option: str,
                                                            value: str) -> None:
    argv = ["run", "--budget", "2GB", "--latency", "50ms", option, value]
    try:
        args = parse_args(argv)
    except SystemExit as exit:
        err = capsys.readouterr().err
        assert exit.code == 2 and len(err.splitlines()) == 1 and err.startswith("autotune: error: "), err
        return
    assert isinstance(args, argparse.Namespace)
    try:
        check_run_options(args)
    except InputError as error:
        assert str(error).isprintable() and option in str(error), str(error)


def test_the_command_line_and_the_library_share_defaults_and_bounds() -> None:
    from autotune.cli.main import build_parser
    from autotune.options import OBJECTIVES, TuneOptions

    args = build_parser().parse_args(["run", "--budget", "2GB", "--latency", "50ms"])
    assert args.trials == TuneOptions().trials and args.confirm_rounds == TuneOptions().confirm_rounds
    objective = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions  # type: ignore[union-attr]
                     if a.dest == "objective")
    assert tuple(objective.choices) == OBJECTIVES == ("quality", "latency", "memory")


@pytest.mark.parametrize("named, expected", [("/no/such/llama-server", "does not exist"),
                                             ("plain.txt", "not an executable file"),
                                             ("/tmp", "not an executable file")])
def test_a_llama_server_that_cannot_run_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, named: str,
                                                    expected: str) -> None:
    (tmp_path / "plain.txt").write_text("not a program\n")  # mode 644: not executable
    named = str(tmp_path / named) if named == "plain.txt" else named
    line = error_line(capsys, ["run", *BUDGETS, "--clients", "4", "--llama-server", named])
    assert "--llama-server" in line and expected in line


def test_a_named_llama_server_reaches_the_plugin_through_the_environment(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from autotune_llamacpp.server_binary import find_binary

    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    # Recorded here, so the teardown restores what was there: main() sets the variable outside monkeypatch, and
    # a fake binary left in it made every later test's llama-server "exit 0 before it was ready".
    monkeypatch.setenv("AUTOTUNE_LLAMA_SERVER", "")
    seen: list[str | None] = []
    cli = importlib.import_module("autotune.cli.main")  # the package exports its main() under the module's name
    monkeypatch.setattr(cli, "COMMANDS", {"run": lambda args: seen.append(str(find_binary())) or 0})
    assert main(["run", *BUDGETS, "--clients", "4", "--llama-server", str(binary)]) == 0
    assert seen == [str(binary.resolve())] and os.environ["AUTOTUNE_LLAMA_SERVER"] == str(binary.resolve())
