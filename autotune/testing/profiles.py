"""Valid deployment profiles of every built-in backend, and how to mutate them: for property tests and the fuzz bench.

``sample_profile(backend)`` is what ``autotune run`` writes for a typical configuration of that backend (the
params a search really produces). ``mutation_sites`` lists every place in a profile's JSON a mutation can hit
(each field, each nested object as a whole, and a new unknown key in each object), and ``mutated`` applies one.
``HOSTILE_VALUES`` are the values the issue reports and their neighbours: shell text, lists, null, NaN, huge
numbers, numbers as strings, booleans for integers.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel

from autotune.budget import Budget
from autotune.measurement import Measurement
from autotune.profile.schema import ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted
from autotune.workload import Workload

SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "llamacpp": {"quant": "Q4_K_M", "n_threads": 2, "n_batch": 512, "n_ubatch": 512, "flash_attn": True,
                 "type_kv": "q8_0", "use_mmap": True},
    "onnxruntime": {"precision": "int4", "block_size": 32, "accuracy_level": 4, "intra_op_num_threads": 2,
                    "allow_spinning": True, "graph_optimization_level": "ORT_ENABLE_ALL", "execution_provider": "cpu"},
    "openvino": {"weight_format": "int4_asym_g64", "device": "CPU", "threads": 2, "performance_hint": "LATENCY",
                 "inference_precision": "f32", "kv_cache_precision": "u8"},
    "mlx": {"bits": 4, "group_size": 64, "mixed": False, "dtype": "float32", "kv_bits": 8, "prefill_step_size": 512},
}
"""A configuration each backend's search produces (its starting points, with a few settings changed)."""

_ARTIFACTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llamacpp": ("gguf", "Q4_K_M", {"sliding_window": 512, "tensor_types": {"Q4_K": 20, "Q6_K": 2}}),
    "onnxruntime": ("onnx", "int4-b32-a4", {"target": "cpu"}),
    "openvino": ("openvino", "int4_asym_g64", {"layers_by_bits": {"4": 28, "8": 2}}),
    "mlx": ("mlx", "q4-g64-float32", {"kv_group_size": 64}),
}

BACKENDS = tuple(SAMPLE_PARAMS)

HOSTILE_VALUES: tuple[Any, ...] = (
    "2; touch x", "$(id)", "512", "", "\n", "q8_0\n", [1, 2], [], {}, {"a": 1}, None, True, False, 0, -1, 1, 2,
    3.5, 2.0, 512.0, float("nan"), float("inf"), float("-inf"), 1e400, 10**30, -(10**30), 2**63, 10**400,
    "9" * 5000, "\ud800", "a\x00b", 'x"""y', "F16", "cpu", "CPU", "GPU.0", "int4", "f16", 16, 8, 4, 64, 2048,
)
"""Values that broke ``validate``/``export`` or lie next to what does. Written to a file, NaN and infinity become
the non-standard literals ``NaN``/``Infinity`` (which the loader refuses); from Python callers they reach validation."""

HOSTILE_TEXT: tuple[str, ...] = (
    "/tmp/my models/it's a \"q\"; rm -rf ~ $(id).gguf", "C:\\Models\\N\\x.gguf", "\\N{BULLET}", "a\nb", "tab\there",
    'three """ quotes', "é/ü/模型", "-rf", "", " ", "~", "$HOME", "`id`", "a\x7fb", "\u2028", "x" * 300,
)
"""Text for the profile's own strings (paths, labels): shell and Python metacharacters, escapes, line breaks."""

DELETE = object()
"""A mutation value meaning: remove this key (or list item)."""

Site = tuple[Any, ...]


def sample_profile(backend: str) -> DeploymentProfile:
    """A valid profile of ``backend`` (one of ``BACKENDS``), as ``autotune run`` writes it."""
    fmt, precision, details = _ARTIFACTS[backend]
    return DeploymentProfile(
        autotune_version="0.1.0", hardware={"fingerprint": "0123456789abcdef", "cpu": {"usable_cores": 2}},
        model=ModelInfo(path="/models/smollm2-135m.gguf", format="gguf", sha256="0" * 64, architecture="llama",
                        parameters=134_515_008, precision="Q8_0"),
        backend=BackendInfo(name=backend, version="1.0"),
        params=dict(SAMPLE_PARAMS[backend]),
        artifact=ArtifactInfo(path=f"/cache/artifacts/smollm2 {precision}", format=fmt, precision=precision,
                              bits_per_weight=4.9, size_bytes=105_000_000, details=dict(details)),
        workload=Workload(prompt_tokens=128, gen_tokens=64, context=2048), budget=Budget.parse("2GB", "50ms"),
        objective="quality",
        measured=Measurement(load_s=0.2, ttft_ms=40, itl_p50_ms=9, itl_p95_ms=11, decode_tps=110, prefill_tps=900,
                             peak_rss_bytes=300_000_000, runs=3, spread=0.02),
        predicted=Predicted(memory_bytes=310_000_000, memory_error=0.03),
        study={"name": "smollm2", "trials": 10, "failed": 0},
    )


def sample_data(backend: str) -> dict[str, Any]:
    """``sample_profile(backend)`` as the JSON object in its file."""
    data: dict[str, Any] = json.loads(sample_profile(backend).to_json())
    return data


def mutation_sites(data: Any, prefix: Site = ()) -> list[Site]:
    """Every place in ``data`` a mutation can hit: each value (leaf or nested), and one new key per object."""
    sites: list[Site] = [prefix] if prefix else []
    if isinstance(data, dict):
        sites.append((*prefix, "unknown_key"))
        for key, value in data.items():
            sites += mutation_sites(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            sites += mutation_sites(value, (*prefix, index))
    return sites


def mutated(data: dict[str, Any], site: Site, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``value`` at ``site`` (``DELETE``: without it); a site that no longer exists is skipped."""
    result = copy.deepcopy(data)
    parent: Any = result
    for part in site[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return result  # an earlier mutation replaced this branch
    last = site[-1]
    if isinstance(parent, dict) or (isinstance(parent, list) and isinstance(last, int) and last < len(parent)):
        if value is DELETE:
            if isinstance(parent, list) or last in parent:
                del parent[last]
        else:
            parent[last] = value
    return result


def schema_choices(model: type[BaseModel]) -> dict[str, list[Any]]:
    """Per field of a params model, the values its JSON Schema names: choices, bounds, default (null where allowed).

    Mostly valid, so mutations with them reach the exporters far more often than arbitrary values do.
    """
    found: dict[str, list[Any]] = {}
    for name, field_schema in model.model_json_schema().get("properties", {}).items():
        values: list[Any] = []
        pending: list[Any] = [field_schema]
        while pending:
            schema = pending.pop()
            values += schema.get("enum", [])
            values += [schema[key] for key in ("minimum", "maximum", "default", "const") if key in schema]
            values += [None] if schema.get("type") == "null" else [True, False] if schema.get("type") == "boolean" else []
            pending += schema.get("anyOf", [])
        found[name] = values or [field_schema.get("default")]
    return found
