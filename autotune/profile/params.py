"""A backend's parameters checked with its ``params_model``: one line naming the parameter that is wrong.

``autotune validate``, ``autotune.load`` and every exporter go through ``validate_params``, so a profile
that validates always exports.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from autotune.errors import ProfileError, one_line
from autotune.profile.schema import DeploymentProfile

if TYPE_CHECKING:
    from autotune.plugins.backend import Backend

MAX_THREADS = 4096
"""Upper bound of the backends' thread-count parameters: more than any machine has, and a number every runtime takes."""

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
