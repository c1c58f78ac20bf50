"""What one trial produced: the record every layer reads (search, judgment, selection, store, profile, CLI).

A record is typed through and through: its prediction, artifact, measurement and quality are the
objects themselves, validated once when the record is made or read back from storage
(``TrialRecord.from_json``), never again on access, and never read by string key outside
``from_json``/``to_json``. The functions every layer needs about records live here too:
``config_key`` (the identity of a configuration), ``within`` (inside every budget) and
``quality_loss`` (the first objective).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autotune.measurement import Measurement
from autotune.plugins.backend import Artifact, Params, Prediction
from autotune.profile.schema import ArtifactInfo, Quality

TrialStatus = Literal["measured", "predicted-infeasible", "screened-out", "failed"]
"""measured: full figures exist; predicted-infeasible: skipped on a prediction over budget; screened-out: one short
run showed it cannot win (its screen figures are kept); failed: with a reason."""
DERIVED = ("precision", "bits_per_weight")
"""Keys ``to_json`` writes for readers of the stored JSON (dashboards, older autotune) that ``from_json`` derives
from the artifact instead of reading."""


def config_key(backend: str, params: Params) -> str:
    """Canonical identity of a configuration, for spotting repeats."""
    return json.dumps({"backend": backend, "params": params}, sort_keys=True, default=str)


def within(excess: Mapping[str, float]) -> bool:
    """True when every budget is met (each relative excess ≤ 0, see ``judgment.violations``)."""
    return all(value <= 0 for value in excess.values())


def artifact_info(artifact: Artifact) -> ArtifactInfo:
    """What a record (and a profile) keeps of a built artifact: its facts, with the path as text."""
    return ArtifactInfo(path=str(artifact.path), format=artifact.format, precision=artifact.precision,
                        bits_per_weight=artifact.bits_per_weight, size_bytes=artifact.size_bytes,
                        details=dict(artifact.details))


class TrialRecord(BaseModel):
    """Everything one trial produced; ``to_json`` is what the study and the measurement store keep."""

    model_config = ConfigDict(extra="forbid")

    number: int
    status: TrialStatus
    backend: str
    params: Params
    label: str | None = None
    """The backend's compact description of the configuration (``Backend.describe``)."""
    prediction: Prediction | None = None
    artifact: ArtifactInfo | None = None
    """What was built (or the source used as is); set from the moment a trial reaches measuring."""
    measurement: Measurement | None = None
    """Full figures when measured; a screen's short figures when screened out."""
    quality: Quality | None = None
    violations: dict[str, float] = Field(default_factory=dict)
    """Relative excess over each budget (≤ 0: within), of the budget this record was judged against."""
    reason: str | None = None
    cause: str | None = None
    """The kind of failure or skip, for counting (``killed by SIGILL``, ``timed out``, ``memory``, ``latency``)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any], number: int | None = None) -> TrialRecord:
        """The record ``to_json`` wrote (validated here, once); ``number`` renumbers it for another study."""
        fields = {key: value for key, value in data.items() if key not in DERIVED}
        if number is not None:
            fields["number"] = number
        return cls.model_validate(fields)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (with the derived precision and bits per weight, for people reading it)."""
        return {**self.model_dump(mode="json"), "precision": self.precision, "bits_per_weight": self.bits_per_weight}

    @property
    def key(self) -> str:
        """``config_key`` of this record's configuration."""
        return config_key(self.backend, self.params)

    @property
    def precision(self) -> str | None:
        """The precision as written (with its fallback), once an artifact exists."""
        return self.artifact.label if self.artifact is not None else None

    @property
    def bits_per_weight(self) -> float | None:
        """The artifact's effective bits per weight, once an artifact exists."""
        return self.artifact.bits_per_weight if self.artifact is not None else None

    @property
    def spent(self) -> bool:
        """Whether it reached measuring (failed there or not): what counts against ``--trials``."""
        return self.artifact is not None

    @property
    def feasible(self) -> bool:
        """Measured, and within every budget (see ``within``)."""
        return self.status == "measured" and within(self.violations)

    def objectives(self) -> tuple[float, float, float]:
        """The minimised objective values (quality loss, worst p95 ITL, peak memory)."""
        m = self.measurement
        assert m is not None and m.peak_rss_bytes is not None, f"trial #{self.number} has no full measurement"
        return (quality_loss(self), m.worst_itl_p95_ms, float(m.peak_rss_bytes))


def figures_of(record: TrialRecord) -> dict[str, Any]:
    """A record's configuration and figures as plain data: the one view of a record besides ``to_json``
    (``autotune answer --json`` and ``store --json`` print it; the dashboard's attributes are named from it)."""
    shown: dict[str, Any] = {"backend": record.backend, "params": record.params, "label": record.label,
                             "precision": record.precision, "bits_per_weight": record.bits_per_weight,
                             "status": record.status}
    m = record.measurement
    if m is not None:
        shown |= {"decode_tps": round(m.decode_tps, 2), "itl_p95_ms": round(m.worst_itl_p95_ms, 2),
                  "ttft_ms": round(m.ttft_ms, 1), "peak_rss_bytes": m.peak_rss_bytes}
    if record.quality is not None and record.quality.kl_divergence is not None:
        kl = record.quality.kl_divergence
        shown |= {"kl_divergence": kl.value, "kl_low": kl.low, "kl_high": kl.high}
    if record.reason:
        shown["reason"] = record.reason
    return shown


def quality_loss(record: TrialRecord) -> float:
    """Measured mean KL divergence, or the bits-per-weight proxy (16 − bits) when quality is unmeasured."""
    if record.quality is not None and record.quality.kl_divergence is not None:
        return record.quality.kl_divergence.value
    return 16.0 - (record.bits_per_weight or 0.0)
