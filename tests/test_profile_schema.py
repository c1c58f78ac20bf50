import json
from pathlib import Path

import pytest

from autotune.budget import Budget
from autotune.errors import ProfileError
from autotune.measurement import Measurement
from autotune.profile.reading import load_profile
from autotune.profile.schema import (
    ArtifactInfo,
    BackendInfo,
    DeploymentProfile,
    ModelInfo,
    Predicted,
    schema_text,
)
from autotune.workload import Workload

SCHEMA = Path(__file__).parents[1] / "profiles" / "profile.schema.json"


def make_profile() -> DeploymentProfile:
    return DeploymentProfile(
        autotune_version="0.1.0", hardware={"fingerprint": "abc"},
        model=ModelInfo(path="/m.gguf", format="gguf", sha256="0" * 64, architecture="llama", parameters=10),
        backend=BackendInfo(name="fake", version="1"), params={"quant": "q4_0", "threads": 2},
        artifact=ArtifactInfo(path="/a.gguf", format="gguf", precision="q4_0", bits_per_weight=4.5, size_bytes=100),
        workload=Workload(), budget=Budget.parse("2GB", "50ms"), objective="quality",
        measured=Measurement(load_s=0.1, ttft_ms=10, itl_p50_ms=5, itl_p95_ms=6, decode_tps=200, prefill_tps=900,
                             peak_rss_bytes=10**8, runs=3, spread=0.01),
        predicted=Predicted(memory_bytes=10**8),
    )


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA.read_text() == schema_text(), "run `autotune schema --write profiles/profile.schema.json`"


def test_schema_has_the_documented_keys() -> None:
    schema = json.loads(schema_text())
    for key in ("schema_version", "autotune_version", "created_at", "hardware", "model", "backend", "params",
                "workload", "budget", "measured", "predicted", "quality", "alternatives", "exports"):
        assert key in schema["properties"], key


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(make_profile().to_json())
    assert load_profile(path) == make_profile().model_copy(update={"created_at": load_profile(path).created_at})


def test_invalid_field_is_named(tmp_path: Path) -> None:
    data = json.loads(make_profile().to_json())
    data["measured"]["decode_tps"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="measured.decode_tps"):
        load_profile(path)


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"), ('{"name": "x"}', "not an autotune profile"), ('{"schema_version": 99}', "schema_version 99"),
])
def test_foreign_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)
