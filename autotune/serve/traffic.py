"""A deployment's traffic: the prompts its clients send, read from the user's own file.

Two formats, told apart by the file's first non-blank character:

* **JSONL**: one JSON object a line, ``{"prompt": "..."}`` or ``{"messages": [{"role": ..., "content": ...}]}``
  (a chat request), optionally with ``"max_tokens"``;
* **plain text**: prompts separated by blank lines.

A fixed, seeded share is held out (``held_out``) and used only to confirm and to verify a deployment later, so
the search never tunes on the prompts that judge it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError, one_line
from autotune.files import read_bounded, shown_path

MAX_PROMPTS_BYTES = 32 * 2**20
"""Largest prompts file read: tens of thousands of prompts; a larger file is a corpus, not a workload sample."""

HELD_OUT_SHARE = 0.25
"""Share of the prompts kept for confirmation only."""


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


def split_held_out(requests: list[Request], source: str, seed: int = 0) -> Traffic:
    """``requests`` split into tuning and held-out parts: a seeded shuffle, so a rerun splits alike."""
    if len(requests) < 2:
        return Traffic(source=source, tuning=tuple(requests), held_out=tuple(requests))
    order = list(range(len(requests)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(requests) * HELD_OUT_SHARE))
    held_ids = set(order[:held])
    return Traffic(source=source,
                   tuning=tuple(r for i, r in enumerate(requests) if i not in held_ids),
                   held_out=tuple(r for i, r in enumerate(requests) if i in held_ids))


def read_traffic(path: Path) -> Traffic:
    """The prompts in the file ``path``, split for tuning and confirmation; a bad file is one ``TrafficError``."""
    raw = read_bounded(path, MAX_PROMPTS_BYTES, "prompts file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrafficError(f"prompts file {shown_path(path)} is not UTF-8 text (byte {error.start}); "
                           "save it as UTF-8") from None
    return split_held_out(parse_prompts(text, f"prompts file {shown_path(path)}"), shown_path(path))
