"""Speculative decoding must leave greedy outputs unchanged: the same greedy requests, with and without it.

llama-server's n-gram speculation (``--spec-type``) drafts tokens from text already seen and lets the model
verify them in one batch; under greedy sampling every accepted draft is the token the model would have chosen
anyway, so the text should be the same as without speculation. "Should" is what this checks, for the
configuration about to be measured or deployed: two servers — the configuration as it is and the same one with
``--spec-type none`` — answer the same requests one at a time (no batching with other requests, so nothing but
speculation differs between them), greedily, and their texts are compared.

A check in which the speculative server accepted no draft proves nothing (nothing was speculated);
``SpeculationCheck.vacuous`` says so, and callers give it copy-heavy prompts (repeat or quote a passage), where
n-gram drafts are accepted.
"""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError
from autotune.serve.server import free_port, started
from autotune.serve.traffic import Request

GREEDY: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "seed": 0}
"""Greedy sampling as llama-server reads it (temperature 0 takes the most likely token; top_k 1 says it twice)."""
EXCERPT_CHARS = 40
"""Characters shown on each side of where two texts part."""
REQUEST_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class GreedyAnswer:
    """One greedy completion: its text and the drafts the server made and accepted for it (None: not reported)."""

    text: str
    draft_n: int | None = None
    draft_accepted: int | None = None


@dataclass(frozen=True)
class Divergence:
    """Where a speculative answer first differs from the plain one."""

    request: int
    """Index of the request in the checked list."""
    at_char: int
    plain: str
    speculative: str
    """``EXCERPT_CHARS`` either side of ``at_char`` in each text."""

    def describe(self) -> str:
        """One line: which request, where, and the two texts there."""
        return (f"request {self.request} parts at character {self.at_char}: without speculation {self.plain!r}, "
                f"with it {self.speculative!r}")


@dataclass(frozen=True)
class SpeculationCheck:
    """The outcome of comparing greedy answers with and without speculation."""

    plain: tuple[GreedyAnswer, ...]
    speculative: tuple[GreedyAnswer, ...]
    divergences: tuple[Divergence, ...]

    @property
    def requests(self) -> int:
        """Requests compared."""
        return len(self.plain)

    @property
    def identical(self) -> int:
        """Requests whose two answers are the same text."""
        return self.requests - len(self.divergences)

    @property
    def drafted(self) -> int:
        """Tokens the speculative server drafted over all requests."""
        return sum(a.draft_n or 0 for a in self.speculative)

    @property
    def accepted(self) -> int:
        """Drafted tokens it accepted."""
        return sum(a.draft_accepted or 0 for a in self.speculative)

    @property
    def exact(self) -> bool:
        """Every speculative answer is the plain one."""
        return not self.divergences

    @property
    def vacuous(self) -> bool:
        """No draft was accepted, so speculation never changed what the model computed: the check proves nothing."""
        return self.accepted == 0

    def summary(self) -> str:
        """One line for a person: the verdict, the counts it rests on, and the first divergence if any."""
        drafts = f"{self.accepted} of {self.drafted} drafted tokens accepted"
        if self.exact:
            verdict = "identical" if not self.vacuous else "identical, but no draft was accepted (proves nothing)"
            return f"greedy outputs with speculation: {verdict} in {self.requests} of {self.requests} requests ({drafts})"
        return (f"greedy outputs with speculation differ in {len(self.divergences)} of {self.requests} requests "
                f"({drafts}); first: {self.divergences[0].describe()}")


def copy_requests(text: str, count: int, chars: int = 560, seed: int = 0) -> list[Request]:
    """``count`` requests that ask the model to repeat a passage of ``text`` (``chars`` long, from seeded places),
    with the copy already begun: the case where n-gram drafts are accepted, so a check with them is not vacuous."""
    if len(text) <= chars:
        raise ValueError(f"the text has {len(text)} characters; copy requests need more than {chars}")
    offsets = list(range(0, len(text) - chars, max(1, (len(text) - chars) // max(count, 1))))
    random.Random(seed).shuffle(offsets)
    requests = []
    for index in range(count):
        passage = text[offsets[index % len(offsets)]:][:chars]
        requests.append(Request(prompt=f"Repeat the following passage exactly.\n\nPassage:\n{passage}\n\n"
                                       f"Repeated passage:\n{passage[:80]}"))
    return requests


def speculates(argv: Sequence[str]) -> bool:
    """Whether the llama-server command ``argv`` decodes speculatively (``--spec-type`` other than none)."""
    return any(flag == "--spec-type" and value != "none" for flag, value in zip(argv, argv[1:], strict=False))


def without_speculation(argv: Sequence[str]) -> list[str]:
    """The llama-server command ``argv`` with its speculation turned off: ``--spec-type`` and the ``--spec-*``
    settings (each a flag and its value) taken out, everything else as it was."""
    plain: list[str] = []
    skip = False
    for index, token in enumerate(argv):
        if skip:
            skip = False
            continue
        if index > 0 and token.startswith("--spec-"):
            skip = "=" not in token  # --flag value, or --flag=value in one token
            continue
        plain.append(token)
    return plain


def first_difference(a: str, b: str) -> int | None:
    """The index of the first character where ``a`` and ``b`` differ (the shorter one's length when one is a
    prefix of the other); None when they are equal."""
    if a == b:
        return None
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def _excerpt(text: str, at: int) -> str:
    return text[max(0, at - EXCERPT_CHARS):at + EXCERPT_CHARS]


def compare_answers(plain: Sequence[GreedyAnswer], speculative: Sequence[GreedyAnswer]) -> SpeculationCheck:
    """The check's outcome for answers to the same requests, in the same order."""
    if len(plain) != len(speculative):
        raise ValueError(f"{len(plain)} plain answers against {len(speculative)} speculative ones")
    divergences = []
    for index, (a, b) in enumerate(zip(plain, speculative, strict=True)):
        at = first_difference(a.text, b.text)
        if at is not None:
            divergences.append(Divergence(index, at, _excerpt(a.text, at), _excerpt(b.text, at)))
    return SpeculationCheck(tuple(plain), tuple(speculative), tuple(divergences))


def greedy_answer(base_url: str, request: Request, max_tokens: int) -> GreedyAnswer:
    """``request`` answered greedily by the OpenAI-compatible server at ``base_url`` (one request, not streamed)."""
    host_port = base_url.removeprefix("http://")
    host, _, port = host_port.partition(":")
    body: dict[str, Any] = {**GREEDY, "max_tokens": request.max_tokens or max_tokens, "stream": False}
    if request.is_chat:
        body["messages"] = [{"role": role, "content": content} for role, content in request.messages]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = request.prompt
        path = "/v1/completions"
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise AutotuneError(f"a greedy request to {base_url} failed: {type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise AutotuneError(f"a greedy request to {base_url} answered HTTP {response.status}: "
                            f"{data[:300].decode('utf-8', 'replace')}")
    answer = json.loads(data)
    choice = (answer.get("choices") or [{}])[0]
    text = choice.get("text")
    if text is None and isinstance(choice.get("message"), dict):
        text = choice["message"].get("content")
    timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
    return GreedyAnswer(text=text if isinstance(text, str) else "", draft_n=timings.get("draft_n"),
                        draft_accepted=timings.get("draft_n_accepted"))


def answers_of(argv_at: Callable[[int], Sequence[str]], requests: Sequence[Request], max_tokens: int,
               log: Path) -> list[GreedyAnswer]:
    """Start the server ``argv_at(port)`` on loopback, answer ``requests`` greedily one after another, stop it."""
    port = free_port()
    with started(argv_at(port), port, log) as server:
        return [greedy_answer(server.base_url, request, max_tokens) for request in requests]


def check_speculation(plain_at: Callable[[int], Sequence[str]], speculative_at: Callable[[int], Sequence[str]],
                      requests: Sequence[Request], max_tokens: int, workdir: Path) -> SpeculationCheck:
    """Compare greedy answers of the server without speculation (``plain_at(port)``, its argv) and with it.

    The two argvs must differ only in speculation (build both from one configuration, ``--spec-type none`` for
    the plain one). The servers run one after the other, each answering every request in turn; their logs go
    to ``workdir``. Raises ``ServerError`` when a server does not start and ``AutotuneError`` when a request fails.
    """
    if not requests:
        raise AutotuneError("the speculation check needs at least one request")
    plain = answers_of(plain_at, requests, max_tokens, workdir / "plain.log")
    speculative = answers_of(speculative_at, requests, max_tokens, workdir / "speculative.log")
    return compare_answers(plain, speculative)
