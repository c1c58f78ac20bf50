"""What a tuning run is asked to do besides the model, budget and workload: typed and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Objective = Literal["quality", "latency", "memory"]
"""What picks the winner among configurations within budget: lowest quality loss, p95 latency or memory."""
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)

DEFAULT_TRIALS = 10
MAX_TRIALS = 10_000
MIN_CONFIRM_ROUNDS = 5
"""Fewer interleaved rounds cannot separate a real difference from the ±5–10% run-to-run noise measured here."""
MAX_CONFIRM_ROUNDS = 100
DEFAULT_BUSY_SHARE = 1.0
"""One core busy: the commonest neighbour, and the one that breaks a thread per core (thread barriers)."""
MAX_BUSY_SHARE = 1024.0
MIN_EVAL_TOKENS = 64
DEFAULT_EVAL_TOKENS = 512
"""Tokens of the evaluation text scored by default: four windows of 128 after the workload's depth of context.
Each score costs the depth's fill plus these tokens' logits over the whole vocabulary (1,024 took 2.5 s more per
score for Gemma 3 270M on 2 cores); the intervals stay far narrower than the gaps between quantization types
(Q4_0 0.42 against Q2_K 0.70 KL)."""
"""Quality intervals are bootstrapped over at least 4 chunks of at least 16 tokens (see ``quality_eval``)."""
MAX_SEED = 2**32 - 1
"""Optuna's sampler seeds numpy, which takes 0 to 2^32 - 1."""
MAX_TIMEOUT_S = 86_400.0
"""A day per measurement: longer is a typo, not a patient user."""


class TuneOptions(BaseModel):
    """Everything about a run besides the model, budget and workload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backends: tuple[str, ...] = Field(default=(), description="tune only these backends (empty: every installed one)")
    trials: int = Field(default=DEFAULT_TRIALS, ge=1, le=MAX_TRIALS, description="new configurations to measure")
    timeout_s: float = Field(default=300.0, gt=0, le=MAX_TIMEOUT_S, description="per-measurement wall-clock limit")
    storage: str | None = Field(default=None, description="Optuna storage URL (default: SQLite in the cache)")
    objective: Objective = "quality"
    seed: int | None = Field(default=0, ge=0, le=MAX_SEED)
    measure_quality: bool = True
    eval_text: Path | None = None
    eval_tokens: int = Field(default=DEFAULT_EVAL_TOKENS, ge=MIN_EVAL_TOKENS)
    chunk_tokens: int = Field(default=256, ge=16)
    confirm_rounds: int = Field(default=MIN_CONFIRM_ROUNDS, ge=0, le=MAX_CONFIRM_ROUNDS,
                                description=f"interleaved confirmation rounds: 0 skips, else at least {MIN_CONFIRM_ROUNDS}")
    strict: bool = Field(default=False, description="require the p95 interval's upper end within the latency budget")
    screening: bool = Field(default=True, description="screen each new configuration with one short run before "
                            "measuring it in full and scoring its quality (see autotune.search.pipeline)")
    patience: int = Field(default=4, ge=0, le=10_000, description="stop after this many trials in a row that could "
                          "not beat the best beyond the noise (0: never stop early)")
    busy_share: float = Field(default=DEFAULT_BUSY_SHARE, ge=0, le=MAX_BUSY_SHARE, allow_inf_nan=False,
                              description="cores' worth of synthetic competing load the confirmation also measures "
                              "under (0: none; see autotune.measure.competing_load)")
    under_load: bool = Field(default=False, description="measure every finalist under the competing load in every "
                             "confirmation round and choose on those figures (the budget applies to them)")

    @model_validator(mode="after")
    def _load_to_measure_under(self) -> TuneOptions:
        if self.under_load and (self.busy_share == 0 or self.confirm_rounds == 0):
            raise ValueError("under_load needs a competing load (busy_share above 0) and confirmation rounds")
        return self

    @field_validator("confirm_rounds")
    @classmethod
    def _enough_rounds(cls, rounds: int) -> int:
        if 0 < rounds < MIN_CONFIRM_ROUNDS:
            raise ValueError(f"confirm_rounds must be 0 (skip) or at least {MIN_CONFIRM_ROUNDS}, got {rounds}")
        return rounds
