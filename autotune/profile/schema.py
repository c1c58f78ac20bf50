"""The deployment profile: autotune's answer, as versioned, schema-validated JSON (the models and their schema).

``profiles/profile.schema.json`` is generated from these models (``autotune schema``);
a test fails when it is out of date. Checking a profile's ``params`` with its backend's model is
``profile.params``; reading a profile file safely is ``profile.reading``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from autotune.budget import Budget
from autotune.measurement import Measurement
from autotune.plugins.backend import precision_label
from autotune.workload import Workload

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelInfo(_Strict):
    """The model the profile is for, as the user gave it."""

    path: str
    format: str
    sha256: str
    architecture: str | None = None
    parameters: int | None = None
    precision: str | None = Field(default=None, description="the source's own precision, e.g. Q4_K_M or F16")


class BackendInfo(_Strict):
    """The runtime that serves the model."""

    name: str
    version: str | None = None


class ArtifactInfo(_Strict):
    """The file or folder to deploy (quantized/converted from the source)."""

    path: str
    format: str
    precision: str
    bits_per_weight: float
    size_bytes: int
    details: dict[str, Any] = Field(default_factory=dict)
    written: str | None = Field(default=None, description="the precision as written: ``precision`` with the types "
                                "tensors fell back to, or the source file's own mix (derived from ``details``; "
                                "recomputed whenever a profile is read)")

    @model_validator(mode="after")
    def _written(self) -> ArtifactInfo:
        # Derived, never trusted from the file: the written precision always matches precision and details.
        self.written = self.label
        return self

    @field_serializer("written")
    def _written_now(self, _stored: str | None) -> str:
        return self.label  # a copy made with model_copy(update=...) skips the validator: derive it on writing too

    @property
    def label(self) -> str:
        """The precision as written, with its fallback when one happened (see ``autotune.precision_label``)."""
        return precision_label(self.precision, self.details)


class Predicted(_Strict):
    """What autotune predicted before measuring, and how far off it was."""

    memory_bytes: int
    memory_error: float | None = Field(default=None, description="(predicted - measured) / measured peak memory")
    breakdown: dict[str, int] = Field(default_factory=dict)


class Interval(_Strict):
    """A point estimate with a confidence interval."""

    value: float
    low: float
    high: float


class Quality(_Strict):
    """Quality loss of this configuration against the reference variant of the same model."""

    method: str = Field(description="'kl-divergence' (measured) or 'bits-per-weight proxy'")
    reference: str | None = Field(default=None, description="the variant compared against")
    bits_per_weight: float | None = None
    kl_divergence: Interval | None = Field(default=None, description="mean KL divergence per token (nats) of this "
                                           "configuration's next-token distributions from the reference's, as it runs "
                                           "(KV-cache types included), over chunks as deep as the workload reaches")
    top1_agreement: Interval | None = None
    perplexity_ratio: Interval | None = None
    bits_per_byte: Interval | None = Field(
        default=None, description="this configuration's cross-entropy of the evaluation text in bits per UTF-8 byte: "
        "comparable across models and tokenizers (lower is better)")
    tokens: int | None = None
    chunk_tokens: int | None = Field(default=None, description="tokens per chunk, each scored from an empty context: "
                                     "the deepest context position scored")


class ConfirmedFigures(_Strict):
    """One configuration of the confirmation rounds, measured quiet and with part of the machine busy."""

    label: str = Field(description="'#n' (trial n), 'untuned' or 'rule of thumb'")
    params: dict[str, Any]
    chosen: bool = False
    rounds: int = Field(description="quiet rounds it was measured in")
    decode_tps: Interval | None = None
    itl_p95_ms: Interval | None = None
    busy_rounds: int = Field(default=0, description="rounds measured under the synthetic competing load")
    busy_decode_tps: Interval | None = None
    busy_itl_p95_ms: Interval | None = None
    collapses: bool = Field(default=False, description="under the load its decode speed fell below half the quiet "
                            "figure, or its p95 latency went over the latency budget")


class Confirmation(_Strict):
    """Interleaved re-measurement of the finalists."""

    rounds: int = Field(description="rounds that ran: they stop once the decision is settled (the notes say why)")
    max_rounds: int | None = Field(default=None, description="the most rounds --confirm-rounds allowed")
    decode_tps: Interval = Field(description="the chosen configuration's, over the rounds (busy with --under-load)")
    itl_p95_ms: Interval = Field(description="the chosen configuration's, over the rounds (busy with --under-load)")
    verdict: str = Field(description="'winner', 'tie' or 'single finalist' (no other configuration was within the noise)")
    marginal: bool = Field(default=False, description="the p95 latency interval straddles the budget")
    speedup_over_untuned: Interval | None = None
    untuned_params: dict[str, Any] | None = None
    speedup_over_rule_of_thumb: Interval | None = Field(
        default=None, description="decode speed against every physical core with the runtime's defaults")
    rule_of_thumb_params: dict[str, Any] | None = None
    versus_rule_of_thumb: Literal["faster", "tie", "slower", "same"] | None = Field(
        default=None, description="'faster'/'slower' only when the interval lies beyond 2% and the sign test "
        "agrees (as between finalists); 'tie' otherwise: inside the noise, no win is claimed; 'same' when the "
        "chosen configuration is the rule of thumb")
    busy_share: float | None = Field(default=None, description="cores' worth of synthetic competing load the busy "
                                     "figures were measured under (None: none were)")
    under_load: bool = Field(default=False, description="every configuration was measured under the load in every "
                             "round and the choice and the budget rest on the busy figures (--under-load)")
    figures: list[ConfirmedFigures] = Field(default_factory=list, description="every configuration measured, quiet "
                                            "and busy")
    load_warnings: list[str] = Field(default_factory=list, description="configurations whose figures collapse under "
                                     "the competing load")
    notes: list[str] = Field(default_factory=list)


class Alternative(_Strict):
    """Another feasible configuration (the Pareto front, best per backend)."""

    backend: str
    params: dict[str, Any]
    precision: str
    measured: Measurement
    quality: Quality | None = None
    trial: int | None = None


class Trial(_Strict):
    """One configuration the search tried, whatever became of it: the rows of the report's table."""

    number: int = Field(description="the trial's number in the study")
    backend: str
    configuration: str | None = Field(default=None, description="the backend's compact description of the settings")
    params: dict[str, Any]
    status: str = Field(description="'measured', 'predicted-infeasible', 'screened-out' or 'failed'")
    feasible: bool = Field(default=False, description="measured and within every budget")
    on_front: bool = Field(default=False, description="on the feasible Pareto front (quality loss, p95, memory)")
    precision: str | None = Field(default=None, description="as written, with its fallback tensor types if any")
    bits_per_weight: float | None = None
    measured: Measurement | None = Field(default=None, description="a screened-out trial's is its short screening run")
    quality: Quality | None = None
    violations: dict[str, float] = Field(default_factory=dict, description="budget → relative excess (≤ 0: within)")
    reason: str | None = Field(default=None, description="why it was skipped, screened out or failed")


class CandidateBest(_Strict):
    """A candidate model's best configuration within the budget (its own search's pick), with the figures the
    choice between models compares."""

    backend: str
    params: dict[str, Any]
    configuration: str | None = Field(default=None, description="the backend's compact description of the settings")
    precision: str = Field(description="as written, with its fallback tensor types if any")
    decode_tps: float = Field(description="decode tokens/s: the confirmed figure when the run confirmed it")
    itl_p95_ms: float = Field(description="p95 inter-token decode latency: the confirmed figure when confirmed")
    peak_rss_bytes: int | None = None
    bits_per_byte: Interval | None = Field(
        default=None, description="cross-entropy of the evaluation text in bits per UTF-8 byte: comparable across "
        "models and tokenizers (lower is better)")
    kl_divergence: Interval | None = Field(
        default=None, description="mean KL divergence from this model's own reference variant (not comparable "
        "across models)")
    weight_bits: float | None = Field(default=None, description="parameters × bits per weight: what is compared "
                                      "instead of bits per byte when quality was not measured")
    confirmed: bool = Field(default=False, description="speed and p95 come from interleaved confirmation rounds")


class CandidateModel(_Strict):
    """One of several models a run tuned: its best configuration within the budget, or why none fits."""

    model: ModelInfo
    chosen: bool = False
    best: CandidateBest | None = Field(default=None, description="absent when no configuration fits the budget")
    reason: str | None = Field(default=None, description="why nothing of it fits, or why it was not chosen")


class DeploymentProfile(_Strict):
    """How to deploy one model on one machine within the budgets, with the evidence."""

    schema_version: int = SCHEMA_VERSION
    autotune_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    hardware: dict[str, Any] = Field(description="summary of the probe, with its fingerprint")
    model: ModelInfo
    backend: BackendInfo
    params: dict[str, Any]
    artifact: ArtifactInfo
    workload: Workload
    budget: Budget
    objective: str = Field(description="how the winner was chosen among feasible configurations")
    measured: Measurement = Field(description="latencies are inter-token (ITL) decode latencies; TTFT is separate")
    predicted: Predicted
    quality: Quality | None = None
    confirmation: Confirmation | None = None
    alternatives: list[Alternative] = Field(default_factory=list)
    trials: list[Trial] = Field(default_factory=list, description="every configuration this run's study tried, "
                                "in trial order (the store's figures for other budgets included)")
    candidates: list[CandidateModel] = Field(
        default_factory=list, description="every model a multi-model run tuned (--model given more than once), the "
        "chosen one marked; empty when one model was tuned")
    model_choice: str | None = Field(default=None, description="how the model was chosen among the candidates")
    study: dict[str, Any] = Field(default_factory=dict, description="storage, study name, trial counts; "
                                  "tuner_peak_tree_bytes: the peak resident memory of the tuner itself (its process "
                                  "and its workers together) during the run")
    exports: dict[str, str] = Field(default_factory=dict, description="format name → text")

    def to_json(self) -> str:
        """The profile as indented JSON."""
        return self.model_dump_json(indent=2)


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of ``DeploymentProfile``."""
    schema = DeploymentProfile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://autotune.dev/profile.schema.v{SCHEMA_VERSION}.json"
    return schema


def schema_text() -> str:
    """The schema file's exact contents."""
    return json.dumps(profile_schema(), indent=2, sort_keys=True) + "\n"
