"""The deployment profile: autotune's answer, as versioned, schema-validated JSON.

``profiles/profile.schema.json`` is generated from these models (``autotune schema``);
a test fails when it is out of date.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
import stat
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from autotune.budget import Budget
from autotune.errors import ProfileError, one_line
from autotune.measurement import Measurement
from autotune.plugins.backend import precision_label
from autotune.workload import Workload

if TYPE_CHECKING:
    from autotune.plugins.backend import Backend

SCHEMA_VERSION = 1
MAX_PROFILE_BYTES = 16 * 2**20
"""Largest profile file read: real ones are a few kilobytes; this keeps an endless or huge file from filling memory."""
MAX_DEPTH = 64
"""Deepest nesting of JSON arrays and objects read (real profiles nest about five levels): deeper structures
would exhaust Python's recursion limit in validation, printing or export."""
MAX_THREADS = 4096
"""Upper bound of the backends' thread-count parameters: more than any machine has, and a number every runtime takes."""
HINT = "pass a profile written by `autotune run`"


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
    speedup_over_rule_of_thumb: Interval | None = Field(
        default=None, description="decode speed against every physical core with the runtime's defaults")
    rule_of_thumb_params: dict[str, Any] | None = None
    versus_rule_of_thumb: Literal["faster", "tie", "slower", "same"] | None = Field(
        default=None, description="'faster'/'slower' only when the interval lies beyond 2% and the sign test "
        "agrees (as between finalists); 'tie' otherwise: inside the noise, no win is claimed; 'same' when the "
        "chosen configuration is the rule of thumb")
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


P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")


def _whole_number(value: Any) -> Any:
    """Refuse a float or a bool where an integer is expected: ``512.0`` and ``true`` are not ``512`` and ``1``.

    Strict pydantic still matches ``512.0`` against ``Literal[512]``; a profile that says ``512.0`` was not
    written by autotune, so it is refused like any other float for an integer.
    """
    if isinstance(value, (bool, float)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


IntChoice = Annotated[T, BeforeValidator(_whole_number)]
"""An integer ``Literal`` (``IntChoice[Literal[256, 512]]``) that takes integers only, for backends' params models."""


def shown(value: Any, width: int = 60) -> str:
    """``value`` as it is spelt in JSON (``null``, ``true``, ``"2; touch x"``), cut to ``width`` characters.

    Unprintable characters are escaped, so the value cannot split or garble the one-line message it goes into.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):  # non-string keys, cycles, deep structures from Python callers
        text = reprlib.repr(value)
    text = one_line(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def _accepted(schema: Mapping[str, Any]) -> str:
    """What a JSON Schema of one parameter accepts, in words: ``an integer from 1 to 4096 or null``."""
    if "anyOf" in schema:
        return " or ".join(_accepted(part) for part in schema["anyOf"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        choices = [json.dumps(choice) for choice in schema["enum"]]
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"an integer from {low} to {high}"
        return f"an integer ≥ {low}" if low is not None else f"an integer ≤ {high}" if high is not None else "an integer"
    if kind == "string" and "pattern" in schema:
        return f"a name matching {schema['pattern']}"
    return {"boolean": "true or false", "null": "null", "string": "a string", "number": "a number"}.get(str(kind), str(kind))


@cache
def _field_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each of ``model``'s fields (computed once per model)."""
    return dict(model.model_json_schema().get("properties", {}))


def params_problem(model: type[BaseModel], error: ValidationError, backend: str) -> str:
    """One line for the first parameter ``model`` refused: which one, what it must be and what it was."""
    first = error.errors()[0]
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    names = ", ".join(model.model_fields)
    if not first["loc"]:
        return f"the {backend} parameters must be a JSON object of {names}, not {shown(first['input'])}"
    name = str(first["loc"][0])
    if first["type"] == "extra_forbidden":
        return f"the {backend} backend has no parameter {name!r} (its parameters: {names}){more}"
    accepted = _accepted(_field_schemas(model).get(name, {}))
    if first["type"] == "missing":
        return f"the {backend} parameter {name!r} is missing; it must be {accepted}{more}"
    return f"the {backend} parameter {name!r} must be {accepted}, not {shown(first['input'])}{more}"


def validate_params(model: type[P], params: P | Mapping[str, Any], backend: str) -> P:
    """``params`` checked and typed by a backend's ``params_model``; ``ProfileError`` names the bad parameter.

    Both ``autotune validate`` and every exporter go through this, so a profile that validates always exports.
    An object of ``model`` (already validated) is returned as it is.
    """
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(dict(params) if isinstance(params, Mapping) else params)
    except ValidationError as error:
        raise ProfileError(params_problem(model, error, backend)) from None


def params_unchecked(backend: str, backends: Mapping[str, Backend]) -> str | None:
    """Why a profile of ``backend`` cannot have its params checked here (None: they can)."""
    if backend not in backends:
        return f"backend {backend} not installed"
    if backends[backend].params_model is None:
        return f"backend {backend} declares no parameter model"
    return None


def check_params(profile: DeploymentProfile, backends: Mapping[str, Backend]) -> None:
    """Validate ``profile.params`` with its backend's ``params_model`` when that backend is in ``backends``."""
    found = backends.get(profile.backend.name)
    model = found.params_model if found is not None else None
    if model is not None:
        validate_params(model, profile.params, profile.backend.name)


def _refuse_odd_kind(mode: int, path: Path) -> None:
    """Refuse anything but a regular file: a folder, a FIFO (waits for a writer), a device (``/dev/zero`` is endless)."""
    if stat.S_ISDIR(mode):
        raise ProfileError(f"{path} is a folder, not a profile file; pass the .json file `autotune run` wrote")
    if not stat.S_ISREG(mode):
        raise ProfileError(f"{path} is not a regular file (a pipe, device or socket); pass a profile file")


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_PROFILE_BYTES``; anything else is one ``ProfileError``.

    The kind of file is checked before it is opened (opening some devices has effects) and again on the open
    file (it may have been replaced in between); it is opened without blocking, so a FIFO cannot hang the check.
    """
    try:
        _refuse_odd_kind(os.stat(path).st_mode, path)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ProfileError(f"profile not found: {path}") from None
    except (OSError, ValueError) as error:  # permission, a path through a file, a name too long, a NUL byte
        raise ProfileError(f"cannot read profile {path}: {getattr(error, 'strerror', None) or error}") from None
    with os.fdopen(descriptor, "rb") as file:
        _refuse_odd_kind(os.fstat(file.fileno()).st_mode, path)
        try:
            data = file.read(MAX_PROFILE_BYTES + 1)  # bounded even when the size in stat is wrong (procfs says 0)
        except OSError as error:
            raise ProfileError(f"cannot read profile {path}: {error.strerror or error}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path} is larger than {MAX_PROFILE_BYTES // 2**20} MiB, far more than any profile; {HINT}")
    return data


def _refuse_constant(name: str) -> Any:
    """``json.loads`` hook for ``NaN``/``Infinity``: not JSON, and never written by autotune (it writes null)."""
    raise ProfileError(f"{name} is not a JSON number; profiles hold finite numbers only")


def _finite_float(text: str) -> float:
    """``json.loads`` hook for numbers with a fraction or exponent: ``1e400`` would become infinity."""
    value = float(text)
    if math.isinf(value):
        raise ProfileError(f"the number {shown(text, 30)} is too large; profiles hold finite numbers only")
    return value


TOO_DEEP = f"nests arrays or objects deeper than {MAX_DEPTH} levels"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_shape(data: Any) -> str | None:
    """What makes parsed JSON unusable although it parsed (None: nothing): too deep, or an unpaired surrogate.

    Walks without recursion, so the check itself cannot run out of stack.
    """
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return TOO_DEEP
            items = list(value.items()) if isinstance(value, dict) else [(None, item) for item in value]
            for key, item in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"has a key with an unpaired surrogate escape ({shown(key, 30)}), which is not text"
                pending.append((item, depth + 1))
        elif isinstance(value, str) and _SURROGATE.search(value):
            return f"has a string with an unpaired surrogate escape ({shown(value, 30)}), which is not text"
    return None


def read_profile_json(path: Path) -> Any:
    """The JSON value in a profile file, read safely: every odd file (see ``_read_bounded``) is one ``ProfileError``."""
    raw = _read_bounded(path)
    try:
        # Bytes, so that UTF-8 (with or without a BOM), UTF-16 and UTF-32 files are all read.
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ProfileError as error:
        raise ProfileError(f"{path}: {error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path} is not JSON ({error}); {HINT}") from None
    except RecursionError:
        raise ProfileError(f"{path} {TOO_DEEP}; {HINT}") from None
    except ValueError:  # the only other one: an integer of more digits than Python converts
        raise ProfileError(f"{path} holds an integer of more than {sys.get_int_max_str_digits()} digits; {HINT}") from None
    return data


def profile_from_data(data: Any, where: str | Path,
                      backends: Mapping[str, Backend] | None = None) -> DeploymentProfile:
    """Validate parsed profile JSON: its shape, schema version, schema, then ``params`` with the backend's model.

    ``where`` names the file in messages. The params are checked when the profile's backend is in ``backends``
    (by default the installed ones), so a profile this accepts renders with every applicable exporter.
    """
    problem = _check_shape(data)
    if problem:
        raise ProfileError(f"{where} {problem}; {HINT}")
    if not isinstance(data, dict):
        kind = "a JSON array" if isinstance(data, list) else "a single JSON value"
        raise ProfileError(f"{where} is not an autotune profile ({kind}, not an object); {HINT}")
    if "schema_version" not in data:
        raise ProfileError(f"{where} is not an autotune profile (no schema_version); {HINT}")
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:  # noqa: E721 - true and 1.0 are not version 1
        raise ProfileError(f"{where} has schema_version {shown(version, 30)}; this autotune reads version {SCHEMA_VERSION}")
    try:
        profile = DeploymentProfile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise ProfileError(f"{where}: invalid field {field!r}: {first['msg']}{more}") from None
    if backends is None:
        from autotune.plugins.manager import get_plugin_manager

        backends = get_plugin_manager().backends()
    try:
        check_params(profile, backends)
    except ProfileError as error:
        raise ProfileError(f"{where}: {error}") from None
    return profile


def load_profile(path: Path, backends: Mapping[str, Backend] | None = None) -> DeploymentProfile:
    """Read and validate a profile file; anything wrong with it, its shape or its kind is one ``ProfileError``.

    See ``read_profile_json`` (the file) and ``profile_from_data`` (the contents, ``params`` included).
    """
    return profile_from_data(read_profile_json(path), path, backends)
