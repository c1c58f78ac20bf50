"""The deployment profile: autotune's answer, as versioned, schema-validated JSON.

``profiles/profile.schema.json`` is generated from these models (``autotune schema``);
a test fails when it is out of date.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backend import precision_label
from .budget import Budget
from .errors import ProfileError
from .measurement import Measurement
from .workload import Workload

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    kl_divergence: Interval | None = None
    top1_agreement: Interval | None = None
    perplexity_ratio: Interval | None = None
    tokens: int | None = None


class Confirmation(_Strict):
    """Interleaved re-measurement of the finalists."""

    rounds: int
    decode_tps: Interval
    itl_p95_ms: Interval
    verdict: str = Field(description="'winner', 'tie' or 'single finalist' (no other configuration was within the noise)")
    marginal: bool = Field(default=False, description="the p95 latency interval straddles the budget")
    speedup_over_untuned: Interval | None = None
    untuned_params: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)


class Alternative(_Strict):
    """Another feasible configuration (the Pareto front, best per backend)."""

    backend: str
    params: dict[str, Any]
    precision: str
    measured: Measurement
    quality: Quality | None = None
    trial: int | None = None


class DeploymentProfile(_Strict):
    """How to deploy one model on one machine within the budgets, with the evidence."""

    schema_version: int = SCHEMA_VERSION
    autotune_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
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
    study: dict[str, Any] = Field(default_factory=dict, description="storage, study name, trial counts")
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


def load_profile(path: Path) -> DeploymentProfile:
    """Read and validate a profile; a bad file gives one line naming the bad field."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ProfileError(f"profile not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path} is not JSON ({error}); pass a profile written by `autotune run`") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ProfileError(f"{path} is not an autotune profile (no schema_version); pass a profile written by `autotune run`")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ProfileError(
            f"{path} has schema_version {data['schema_version']!r}; this autotune reads version {SCHEMA_VERSION}"
        )
    try:
        return DeploymentProfile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise ProfileError(f"{path}: invalid field {where!r}: {first['msg']}{more}") from None
