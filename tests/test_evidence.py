"""One figure per claim: every export quotes the confirmed figures with their intervals and the written precision."""

from __future__ import annotations

import pytest

from autotune.plugins.exporter import decode_claim, evidence
from autotune.plugins.manager import get_plugin_manager
from autotune.profile.schema import Confirmation, DeploymentProfile, Interval
from autotune.testing.profiles import BACKENDS, sample_profile

FALLBACK = "90/236 tensors fell back to Q5_0/Q8_0"
CONFIRMED = "confirmed in 5 interleaved rounds: decode 71.1 tok/s [62.4, 77.3], p95 14.2 ms/token [13.1, 15.8]"


def confirmed(backend: str) -> DeploymentProfile:
    """The sample profile with confirmed figures lower than its search trial's, and a precision that fell back."""
    profile = sample_profile(backend)
    artifact = profile.artifact.model_copy(update={"details": {**profile.artifact.details, "fallback": FALLBACK}})
    confirmation = Confirmation(rounds=5, decode_tps=Interval(value=71.1, low=62.4, high=77.3),
                                itl_p95_ms=Interval(value=14.2, low=13.1, high=15.8), verdict="winner")
    return profile.model_copy(update={"artifact": artifact, "confirmation": confirmation})


def test_the_evidence_claims_the_confirmed_figures_and_labels_the_search_trial() -> None:
    head, figures = evidence(confirmed("llamacpp"))
    assert f"Q4_K_M ({FALLBACK})" in head
    assert figures.startswith(f"measured: {CONFIRMED}; search trial: decode 110.0 tok/s, p95 11.0 ms/token")
    unconfirmed = evidence(sample_profile("llamacpp"))[1]
    assert unconfirmed.startswith("measured: search trial (not confirmed): decode 110.0 tok/s")
    assert decode_claim(confirmed("mlx")) == "71.1 tok/s [62.4, 77.3] confirmed in 5 rounds"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_export_quotes_the_confirmed_figures(backend: str) -> None:
    exporters = [e for e in get_plugin_manager().exporters().values() if e.applies_to(backend) and e.name != "json"]
    if not exporters:
        pytest.skip(f"no exporter of {backend} installed")
    profile = confirmed(backend)
    quoted = 0
    for exporter in exporters:
        text = exporter.render(profile)
        if "tok/s" not in text:  # a format without comments (genai-config): no figures claimed at all
            continue
        quoted += 1
        assert CONFIRMED in text, exporter.name
        assert "search trial: decode 110.0 tok/s" in text, exporter.name
        assert "measured 110.0" not in text and "measured: decode" not in text, exporter.name
        assert FALLBACK in text, exporter.name
    assert quoted, f"no export of {backend} carries its evidence"


def test_trial_lines_and_tables_show_the_written_precision() -> None:
    from types import SimpleNamespace

    from autotune.cli.console import describe, settings

    # What the console reads of a record: its backend's label, its params and its written precision.
    record = SimpleNamespace(backend="llamacpp", params={"quant": "Q4_K_M"}, precision=f"Q4_K_M ({FALLBACK})",
                             label="Q4_K_M t=2 b=512/512 fa=off kv=f16 mmap")
    assert settings(record) == f"Q4_K_M t=2 b=512/512 fa=off kv=f16 mmap ({FALLBACK})"
    assert describe(record).endswith(f"({FALLBACK})")
    plain = SimpleNamespace(backend="llamacpp", params={"quant": "Q4_0"}, precision="Q4_0", label="Q4_0 t=2")
    assert settings(plain) == "Q4_0 t=2"


def test_the_profile_says_the_written_precision() -> None:
    """``artifact.written``: the precision with its fallbacks, derived from the details, never trusted from the file."""
    import json

    from autotune.profile.schema import DeploymentProfile

    profile = confirmed("llamacpp")
    data = json.loads(profile.to_json())
    assert data["artifact"]["precision"] == "Q4_K_M" and data["artifact"]["written"] == f"Q4_K_M ({FALLBACK})"
    data["artifact"]["written"] = "Q8_0"  # a file that says otherwise is corrected on reading
    assert DeploymentProfile.model_validate(data).artifact.written == f"Q4_K_M ({FALLBACK})"
