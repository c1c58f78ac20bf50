"""Assembling the deployment profile from the evidence a run gathered."""

from __future__ import annotations

from dataclasses import dataclass, field

from autotune.context import RunContext
from autotune.decide.selection import best_per_backend
from autotune.distribution import installed_version
from autotune.measure import tree_peak
from autotune.measure.artifacts import prepare_artifact
from autotune.model.source import cached_content_hash
from autotune.options import Objective
from autotune.plugins.backend import runtime_version
from autotune.plugins.exporter import render_exports
from autotune.profile.schema import (
    Alternative,
    ArtifactInfo,
    BackendInfo,
    Confirmation,
    DeploymentProfile,
    ModelInfo,
    Predicted,
    Quality,
    Trial,
)
from autotune.record import TrialRecord, artifact_info
from autotune.search.sources import ResolvedBackend
from autotune.store.storage import redact_url

OBJECTIVE_NOTES: dict[Objective, str] = {
    "quality": "lowest measured quality loss (mean KL divergence); statistically tied losses broken by p95 latency",
    "latency": "lowest p95 inter-token latency, then quality loss",
    "memory": "lowest peak memory, then quality loss",
}


@dataclass
class Evidence:
    """What the search and confirmation produced, for the profile."""

    winner: TrialRecord
    front: list[TrialRecord]
    feasible: list[TrialRecord]
    records: list[TrialRecord]
    confirmation: Confirmation | None
    study_name: str
    storage: str | None
    measured_now: int
    failed: int
    """Failed trials in the study, those of interrupted runs (which left no record) included."""
    dropped: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    """Installed backends not tuned, with why (before the search: unavailable, cannot run the model, ...)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per phase of this run (self-tests, conversions, builds, measurements, quality, ...)."""


@dataclass
class TuneResult:
    """What ``autotune.tune`` returns: the chosen profile and the evidence behind it."""

    profile: DeploymentProfile
    records: list[TrialRecord]
    front: list[TrialRecord]
    winner: TrialRecord
    study_name: str
    new_measurements: int


def deployed_artifact(winner: TrialRecord, resolved: ResolvedBackend) -> ArtifactInfo:
    """The winner's artifact where it is now, for the model file given this time.

    A record from an earlier run keeps the path that run saw: the source file used as it is, since moved or
    renamed, or another cache. The artifact cache resolves "the source" to this run's file, so the profile and
    every export name the file that exists. Looking it up fails only when the artifact can no longer be built:
    the record's own description is kept then.
    """
    assert winner.artifact is not None
    try:
        artifact, _ = prepare_artifact(resolved.backend, resolved.source, winner.params)
    except Exception:  # noqa: BLE001 - a plugin's failure here costs the fresh path, never the profile
        return winner.artifact
    return artifact_info(artifact)


def build_profile(context: RunContext, evidence: Evidence, by_name: dict[str, ResolvedBackend]) -> DeploymentProfile:
    """The validated profile of the winner, with alternatives, the study's counts and every applicable export."""
    model_path, hardware, objective = context.model_path, context.hardware, context.options.objective
    winner = evidence.winner
    r = by_name[winner.backend]
    measured, prediction = winner.measurement, winner.prediction
    assert measured is not None and measured.peak_rss_bytes is not None and winner.artifact and prediction
    predicted = prediction.memory_bytes
    per_backend = best_per_backend(evidence.feasible, objective)
    alternatives = {rec.key: rec for rec in [*evidence.front, *per_backend.values()] if rec.key != winner.key}
    native = next((rb for rb in by_name.values() if not rb.conversions), r)
    objective_note = OBJECTIVE_NOTES[objective]
    if winner.quality is None or winner.quality.method != "kl-divergence":
        objective_note += " — quality unmeasured: highest effective bits per weight used as a proxy"
    records = evidence.records
    front_keys = {rec.key for rec in evidence.front}
    profile = DeploymentProfile(
        autotune_version=installed_version(),
        hardware=hardware.summary(),
        model=ModelInfo(path=str(model_path.resolve()), format=native.source.format,
                        sha256=cached_content_hash(model_path), architecture=native.source.architecture,
                        parameters=native.source.parameters, precision=native.source.precision),
        backend=BackendInfo(name=winner.backend, version=runtime_version(r.backend)),
        params=winner.params,
        artifact=deployed_artifact(winner, r),
        workload=context.workload,
        budget=context.budget,
        objective=f"{objective}: {objective_note}",
        measured=measured,
        predicted=Predicted(memory_bytes=predicted,
                            memory_error=(predicted - measured.peak_rss_bytes) / measured.peak_rss_bytes,
                            breakdown=prediction.breakdown),
        quality=winner.quality or Quality(method="bits-per-weight proxy", bits_per_weight=winner.bits_per_weight),
        confirmation=evidence.confirmation,
        alternatives=[Alternative(backend=a.backend, params=a.params, precision=a.precision or "",
                                  measured=a.measurement, quality=a.quality, trial=a.number)
                      for a in alternatives.values() if a.measurement is not None],
        study={"name": evidence.study_name,
               "storage": redact_url(evidence.storage) if evidence.storage else "default (cache sqlite)",
               "trials_total": len(records), "measured_now": evidence.measured_now,
               "measured": sum(rec.status == "measured" for rec in records),
               "predicted_infeasible": sum(rec.status == "predicted-infeasible" for rec in records),
               "screened_out": sum(rec.status == "screened-out" for rec in records),
               "failed": evidence.failed, "feasible": len(evidence.feasible),
               "conversions": {rb.backend.name: rb.conversions for rb in by_name.values()},
               "best_per_backend": {name: rec.number for name, rec in per_backend.items()},
               "dropped_backends": dict(evidence.dropped), "left_out_backends": dict(evidence.left_out),
               "seconds": dict(evidence.seconds),
               # The tool runs on the device it tunes for: its own footprint, this process and its workers.
               "tuner_peak_tree_bytes": tree_peak.tuner_peak_tree_bytes()},
        trials=[trial_row(rec, on_front=rec.key in front_keys) for rec in records],
    )
    exports = render_exports(context.manager.exporters().values(), profile, context.reporter)
    return profile.model_copy(update={"exports": exports})


def trial_row(record: TrialRecord, *, on_front: bool) -> Trial:
    """One trial as the profile keeps it for the report's table."""
    return Trial(number=record.number, backend=record.backend, configuration=record.label, params=record.params,
                 status=record.status, feasible=record.feasible, on_front=on_front, precision=record.precision,
                 bits_per_weight=record.bits_per_weight, measured=record.measurement, quality=record.quality,
                 violations=dict(record.violations), reason=record.reason)
