"""Speculative decoding leaves greedy outputs unchanged (issue 20): the check, on a scripted server whose answers
are known, and on the real Gemma 3 270M through llama-server with copy-heavy prompts, where n-gram drafts are
accepted (so the check is not vacuous)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autotune.serve import speculation
from autotune.serve.speculation import GreedyAnswer, compare_answers, copy_requests, first_difference
from autotune.serve.traffic import Request
from autotune.testing.llama_server import llama_server_binary

EVAL_TEXT = (Path(__file__).parents[1] / "autotune" / "data" / "eval.txt").read_text()


def test_first_difference() -> None:
    assert first_difference("abc", "abc") is None
    assert first_difference("abc", "abd") == 2
    assert first_difference("abc", "abcd") == 3
    assert first_difference("", "x") == 0


def test_compare_answers_counts_and_places_divergences() -> None:
    plain = [GreedyAnswer("the same"), GreedyAnswer("one two three")]
    speculative = [GreedyAnswer("the same", 10, 7), GreedyAnswer("one two four", 5, 1)]
    check = compare_answers(plain, speculative)
    assert (check.requests, check.identical, check.drafted, check.accepted) == (2, 1, 15, 8)
    assert not check.exact and not check.vacuous
    assert check.divergences[0].request == 1 and check.divergences[0].at_char == 8
    assert "differ in 1 of 2 requests" in check.summary() and "request 1 parts at character 8" in check.summary()


def test_a_check_without_accepted_drafts_proves_nothing() -> None:
    check = compare_answers([GreedyAnswer("a")], [GreedyAnswer("a", 4, 0)])
    assert check.exact and check.vacuous
    assert "proves nothing" in check.summary()


def test_without_speculation_takes_out_the_spec_flags_only() -> None:
    argv = ["/bin/llama-server", "-m", "m.gguf", "-np", "4", "--spec-type", "ngram-mod", "--spec-ngram-mod-n-match",
            "24", "--spec-ngram-size-n=3", "--port", "8080"]
    assert speculation.speculates(argv)
    plain = speculation.without_speculation(argv)
    assert plain == ["/bin/llama-server", "-m", "m.gguf", "-np", "4", "--port", "8080"]
    assert not speculation.speculates(plain)
    assert not speculation.speculates(["llama-server", "--spec-type", "none"])


def test_copy_requests_ask_to_repeat_different_passages() -> None:
    requests = copy_requests(EVAL_TEXT, 4)
    assert len({r.prompt for r in requests}) == 4
    for request in requests:
        assert request.prompt is not None and request.prompt.startswith("Repeat the following passage exactly.")
        passage = request.prompt.split("Passage:\n", 1)[1].split("\n\nRepeated passage:\n", 1)[0]
        assert request.prompt.endswith(passage[:80])  # the copy is begun, so n-gram drafts match at once


def _scripted(*flags: str):  # noqa: ANN202 - a port → argv callable
    return lambda port: [sys.executable, "-m", "autotune.testing.scripted_server", "--port", str(port), *flags]


def test_the_check_finds_identical_and_changed_greedy_text_on_a_scripted_server(tmp_path: Path) -> None:
    requests = [Request(prompt="first"), Request(messages=(("user", "second"),))]
    same = speculation.check_speculation(_scripted(), _scripted("--spec-type", "ngram-mod"), requests, 16, tmp_path)
    assert same.exact and same.requests == 2 and same.accepted == 18 and not same.vacuous
    changed = speculation.check_speculation(_scripted(), _scripted("--spec-type", "ngram-mod", "--diverge"),
                                            requests, 16, tmp_path)
    assert not changed.exact and len(changed.divergences) == 2
    assert "but speculated" in changed.divergences[0].speculative


@pytest.fixture(scope="module")
def server_binary() -> Path:
    try:
        return llama_server_binary()
    except LookupError as why:
        pytest.skip(f"no llama-server built here ({why}); make test builds it")


def test_ngram_speculation_leaves_gemma_greedy_output_unchanged(server_binary: Path, tmp_path: Path) -> None:
    """The real check: Gemma 3 270M (bundled) asked to repeat passages, greedy, with and without ngram-mod.

    One slot and one request at a time on both servers, so only speculation differs. The drafts must be
    accepted (else the comparison says nothing), and the texts must be the same.
    """
    from autotune.model.bundled import model_path

    model = model_path("gemma3-270m")

    def argv(*extra: str):  # noqa: ANN202 - a port → argv callable
        return lambda port: [str(server_binary), "-m", str(model), "-c", "2048", "-np", "1", "-t", "2", *extra,
                             "--host", "127.0.0.1", "--port", str(port), "--no-webui"]

    check = speculation.check_speculation(argv(), argv("--spec-type", "ngram-mod"), copy_requests(EVAL_TEXT, 3),
                                          64, tmp_path)
    print(check.summary())
    assert check.accepted > 0, check.summary()
    assert check.exact, check.summary()
