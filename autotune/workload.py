"""The workload a trial measures: how long the prompt is, how much is generated, at what context, for how many
clients, and (for a served deployment) which prompts they send."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROMPT_TEXT = (
    "The history of computing is a story of machines that became faster, smaller and cheaper with "
    "every generation. Early computers filled entire rooms and were programmed by rewiring panels; "
    "today a phone in a pocket runs programs that translate languages, recognise faces and answer "
    "questions in plain English. Language models are one of the newest of these programs. They read "
    "a piece of text and predict the word that comes next, again and again, until they have written "
    "a sentence, a paragraph or a whole page. How quickly they do this depends on the hardware, on "
    "the precision of their weights and on many small settings of the software that runs them. "
)
"""Fixed English text every backend cuts its timed prompts from (repeated as needed), so prompts compare
across backends; speed does not depend on which tokens are decoded, only on how many."""


class PromptsFile(BaseModel):
    """The user's own prompts file a served workload sends (``autotune.serve.traffic`` reads it).

    Its identity is its content (``sha256``) and the held-out split, never where it lies: the same prompts
    moved elsewhere are the same workload, and an edited file is another one (``Workload.key``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="where the file was read (not part of the workload's identity)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the file's content hash")
    held_out: float = Field(gt=0, lt=1, description="share of the prompts kept to confirm and verify, never tuned on")
    prompts: int = Field(ge=1, description="prompts in the file, held-out ones included")


class Workload(BaseModel):
    """What one timed run does: prefill ``prompt_tokens``, then decode ``gen_tokens``.

    ``context`` is the context window the runtime is configured with (it sizes the KV cache, per client);
    ``depth`` is where in that window decode latency is also measured (``None``: near the end
    of the context, ``0``: only at the start). ``concurrency`` is the number of clients sending
    requests at once and ``prompts`` the file they send (``None``: cut from the evaluation text);
    a workload with either is served, so only a server backend measures it (``served``).
    ``stop_over_itl_ms`` bounds a served measurement's loads: each stops once its p95 inter-token latency is
    certain to be over it (the tuner sets the latency budget for measurements under a competing load, where a
    collapsing configuration would stream for minutes to show what its first few dozen gaps prove).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prompt_tokens: int = Field(default=128, ge=1, description="tokens prefilled before decoding")
    gen_tokens: int = Field(default=64, ge=2, description="tokens generated per timed run")
    context: int = Field(default=2048, ge=16, description="context window (KV cache size) in tokens")
    concurrency: int = Field(default=1, ge=1, le=1024, description="clients sending requests at once (--clients)")
    runs: int = Field(default=3, ge=1, description="timed runs per trial, after one warm-up")
    depth: int | None = Field(
        default=None, ge=0, description="KV depth at which decode latency is also measured; None = context - gen_tokens, 0 = start only"
    )

    prompts: PromptsFile | None = Field(default=None, description="the clients' prompts file (--prompts)")
    stop_over_itl_ms: float | None = Field(
        default=None, gt=0, description="served loads stop once their p95 inter-token latency is certain to be over "
                                        "this many milliseconds; None = every load runs out")

    @model_validator(mode="after")
    def _fits_context(self) -> Workload:
        if self.prompt_tokens + self.gen_tokens > self.context:
            raise ValueError(
                f"prompt ({self.prompt_tokens}) + generated ({self.gen_tokens}) tokens exceed the context "
                f"({self.context}); raise --context or lower --prompt-tokens/--gen-tokens"
            )
        return self

    @property
    def deep_start(self) -> int:
        """KV position at which the deep decode measurement starts (0 means no deep measurement)."""
        depth = self.context - self.gen_tokens if self.depth is None else self.depth
        return max(0, min(depth, self.context - self.gen_tokens))

    @property
    def served(self) -> bool:
        """Whether this is a served deployment (several clients or the user's prompts): a server measures it."""
        return self.concurrency > 1 or self.prompts is not None

    def describe(self) -> str:
        """One line for people: the token counts, and the clients and prompts of a served workload."""
        if not self.served:
            return (f"{self.prompt_tokens} prompt + {self.gen_tokens} generated tokens, context {self.context}, "
                    f"decode also measured at depth {self.deep_start}")
        prompts = ("prompts cut from the evaluation text" if self.prompts is None else
                   f"prompts from {self.prompts.path} ({self.prompts.prompts}, {self.prompts.held_out:.0%} held out)")
        return (f"{self.concurrency} client{'s' if self.concurrency > 1 else ''} at once, {self.prompt_tokens} prompt + "
                f"{self.gen_tokens} generated tokens a request, context {self.context} each; {prompts}")

    def key(self) -> dict[str, Any]:
        """What identifies this workload in the measurement store: every field, the prompts by content.

        ``prompts`` and ``stop_over_itl_ms`` are left out while unset, so a workload keys as it did before they
        existed; the prompts file's path is left out, so a moved file keeps its figures.
        """
        exclude: dict[str, Any] = {"prompts": True} if self.prompts is None else {"prompts": {"path"}}
        if self.stop_over_itl_ms is None:
            exclude["stop_over_itl_ms"] = True
        return self.model_dump(exclude=exclude)
