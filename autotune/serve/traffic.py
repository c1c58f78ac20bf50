"""A deployment's traffic: the prompts its clients send, read from the user's own file.

Two formats, told apart by the file's first non-blank character:

* **JSONL**: one JSON object a line, ``{"prompt": "..."}`` or ``{"messages": [{"role": ..., "content": ...}]}``
  (a chat request), optionally with ``"max_tokens"``;
* **plain text**: prompts separated by blank lines.

A fixed, seeded share is held out (``held_out``) and used only to confirm and to verify a deployment later, so
the search never tunes on the prompts that judge it.

A workload names its prompts file by content (``describe_prompts`` → ``autotune.workload.PromptsFile``); whoever
sends them later (a measurement in a worker, ``autotune verify``) reads them back with ``workload_traffic``, which
refuses a file that changed since. Without a file, ``text_requests`` cuts fresh prompts from a text (the
evaluation text), each from another place, so no request repeats another's prefix.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError, one_line
from autotune.files import read_bounded, shown_path
from autotune.workload import PromptsFile, Workload

MAX_PROMPTS_BYTES = 32 * 2**20
"""Largest prompts file read: tens of thousands of prompts; a larger file is a corpus, not a workload sample."""

HELD_OUT_SHARE = 0.25
"""Share of the prompts kept for confirmation only (the default of ``--held-out``)."""

CHARS_PER_TOKEN = 4
"""Characters of English text per token for the BPE vocabularies of small models: the prompt length a prompts
file implies before any model tokenizes it (sizes and the context check only; the server counts the real ones)."""


class TrafficError(AutotuneError):
    """A prompts file that cannot be used as a workload (the message says which line and why)."""


@dataclass(frozen=True)
class Request:
    """One request a client sends: a completion ``prompt`` or chat ``messages`` (exactly one of them)."""

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] = ()
    max_tokens: int | None = None

    @property
    def is_chat(self) -> bool:
        """Whether this request goes to a chat endpoint."""
        return bool(self.messages)

    @property
    def text(self) -> str:
        """The request's text as one string (its size stands for the prompt's length before tokenizing)."""
        return self.prompt if self.prompt is not None else "\n".join(content for _, content in self.messages)

    def body(self, default_max_tokens: int) -> dict[str, Any]:
        """The JSON body of an OpenAI-compatible streaming request for this prompt."""
        body: dict[str, Any] = {"max_tokens": self.max_tokens or default_max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        if self.is_chat:
            body["messages"] = [{"role": role, "content": content} for role, content in self.messages]
        else:
            body["prompt"] = self.prompt
        return body


@dataclass(frozen=True)
class Traffic:
    """The prompts of a workload, split once into those the search uses and those kept to confirm."""

    source: str
    tuning: tuple[Request, ...]
    held_out: tuple[Request, ...] = field(default=())


def _request_of(value: Any, where: str) -> Request:
    if not isinstance(value, dict):
        raise TrafficError(f"{where}: expected a JSON object with \"prompt\" or \"messages\", got {type(value).__name__}")
    max_tokens = value.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= 1_000_000):
        raise TrafficError(f"{where}: \"max_tokens\" must be a whole number from 1 to 1000000")
    if isinstance(value.get("prompt"), str) and value["prompt"].strip():
        return Request(prompt=value["prompt"], max_tokens=max_tokens)
    messages = value.get("messages")
    if isinstance(messages, list) and messages:
        pairs = []
        for message in messages:
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                raise TrafficError(f"{where}: every message needs a \"role\" and a \"content\" string")
            pairs.append((message["role"], message["content"]))
        return Request(messages=tuple(pairs), max_tokens=max_tokens)
    raise TrafficError(f"{where}: needs a non-empty \"prompt\" string or a \"messages\" list")


def parse_prompts(text: str, source: str = "prompts") -> list[Request]:
    """The requests in ``text`` (JSONL or blank-line separated plain text, as the module docstring says)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        requests = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:
                raise TrafficError(f"{source} line {number} is not JSON ({one_line(str(error))[:80]}); "
                                   "a JSONL prompts file holds one JSON object a line") from None
            requests.append(_request_of(value, f"{source} line {number}"))
    else:
        requests = [Request(prompt=block.strip()) for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    if not requests:
        raise TrafficError(f"{source} holds no prompt; give prompts separated by blank lines, or JSONL")
    return requests


def split_held_out(requests: list[Request], source: str, seed: int = 0, share: float = HELD_OUT_SHARE) -> Traffic:
    """``requests`` split into tuning and held-out parts (``share`` of them, at least one): a seeded shuffle, so
    a rerun splits alike. A single prompt is both."""
    if len(requests) < 2:
        return Traffic(source=source, tuning=tuple(requests), held_out=tuple(requests))
    order = list(range(len(requests)))
    random.Random(seed).shuffle(order)
    held = min(len(requests) - 1, max(1, round(len(requests) * share)))
    held_ids = set(order[:held])
    return Traffic(source=source,
                   tuning=tuple(r for i, r in enumerate(requests) if i not in held_ids),
                   held_out=tuple(r for i, r in enumerate(requests) if i in held_ids))


def _read(path: Path) -> tuple[bytes, list[Request]]:
    raw = read_bounded(path, MAX_PROMPTS_BYTES, "prompts file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrafficError(f"prompts file {shown_path(path)} is not UTF-8 text (byte {error.start}); "
                           "save it as UTF-8") from None
    return raw, parse_prompts(text, f"prompts file {shown_path(path)}")


def read_traffic(path: Path, held_out: float = HELD_OUT_SHARE) -> Traffic:
    """The prompts in the file ``path``, split for tuning and confirmation; a bad file is one ``TrafficError``."""
    return split_held_out(_read(path)[1], shown_path(path), share=held_out)


def describe_prompts(path: Path, held_out: float = HELD_OUT_SHARE) -> PromptsFile:
    """The identity of the prompts file ``path`` for a workload: its content hash, split and size (read once now,
    so a bad file is refused before anything is measured)."""
    raw, requests = _read(path)
    return PromptsFile(path=str(Path(path).resolve()), sha256=hashlib.sha256(raw).hexdigest(), held_out=held_out,
                       prompts=len(requests))


def workload_traffic(prompts: PromptsFile) -> Traffic:
    """The prompts a workload names, split as it says; ``TrafficError`` when the file changed or went away."""
    path = Path(prompts.path)
    raw, requests = _read(path)
    if hashlib.sha256(raw).hexdigest() != prompts.sha256:
        raise TrafficError(f"prompts file {shown_path(path)} changed since this workload was described "
                           f"(sha256 {prompts.sha256[:12]}…); restore it, or tune again with the new file")
    return split_held_out(requests, shown_path(path), share=prompts.held_out)


def typical_tokens(requests: tuple[Request, ...] | list[Request]) -> tuple[int, int | None]:
    """(prompt tokens, generated tokens) a typical request of ``requests`` asks for: the median prompt length
    at ``CHARS_PER_TOKEN``, and the median ``max_tokens`` of those that give one (None when none does)."""
    prompt = max(1, round(statistics.median(len(r.text) for r in requests) / CHARS_PER_TOKEN))
    asked = [r.max_tokens for r in requests if r.max_tokens is not None]
    return prompt, (round(statistics.median(asked)) if asked else None)


def text_requests(text: str, prompt_tokens: int, count: int) -> list[Request]:
    """``count`` completion prompts of about ``prompt_tokens`` tokens cut from ``text`` at evenly spaced places
    (wrapping around), so every request starts differently and no prompt cache makes its prefill free."""
    words = text.split()
    if not words:
        raise TrafficError("no text to cut prompts from")
    length = max(1, round(prompt_tokens * CHARS_PER_TOKEN / 6))  # about six characters a word with its space
    step = max(1, len(words) // max(count, 1))
    doubled = words + words[:length]  # a cut near the end wraps around to the beginning
    return [Request(prompt=" ".join(doubled[(i * step) % len(words):][:length])) for i in range(count)]


def fresh_request(requests: Sequence[Request], index: int) -> Request:
    """The ``index``-th request: the traffic's prompts in turn, marked unique once they repeat."""
    base = requests[index % len(requests)]
    cycle = index // len(requests)
    if cycle == 0:
        return base
    mark = f"[request {index}]\n"  # a new first line: no cached prefix to reuse
    if base.is_chat:
        (role, content), *rest = base.messages
        return Request(messages=((role, mark + content), *rest), max_tokens=base.max_tokens)
    return Request(prompt=mark + (base.prompt or ""), max_tokens=base.max_tokens)


def round_requests(requests: Sequence[Request], round_number: int, count: int) -> list[Request]:
    """Round ``round_number``'s ``count`` requests: the prompts in turn, each with a mark no earlier round sent,
    so a server kept running between rounds cannot make a replayed prompt's prefill free through its prompt cache."""
    first = round_number * count + len(requests)  # past the unmarked first cycle of round 0
    return [fresh_request(requests, first + index) if round_number else fresh_request(requests, index)
            for index in range(count)]


def confirmation_requests(workload: Workload) -> tuple[list[Request], str]:
    """The prompts that confirm a served workload and verify it later, never tuned on, and what they are: the
    held-out prompts of its prompts file (a gone or edited file is one ``TrafficError``), else slices of the
    evaluation text cut at other places than the tuning's."""
    if workload.prompts is None:
        return eval_text_requests(workload.prompt_tokens, 32, seed=2019), "fresh slices of the evaluation text"
    traffic = workload_traffic(workload.prompts)
    return list(traffic.held_out), f"the {len(traffic.held_out)} held-out prompts of {traffic.source}"


EVAL_TEXT = Path(__file__).parents[1] / "data" / "eval.txt"


def eval_text_requests(prompt_tokens: int, count: int, seed: int) -> list[Request]:
    """``count`` prompts of about ``prompt_tokens`` tokens cut from the evaluation text at seeded places."""
    text = EVAL_TEXT.read_text()
    chars = max(16, round(prompt_tokens * CHARS_PER_TOKEN))
    if len(text) <= chars:
        text = text * (chars // max(1, len(text)) + 2)
    starts = random.Random(seed).sample(range(len(text) - chars), min(count, len(text) - chars))
    return [Request(prompt=text[start:start + chars]) for start in starts]
