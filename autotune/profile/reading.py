"""Reading a profile file safely: any odd file (a folder, a FIFO, a device, a huge or deeply nested file, NaN,
an unpaired surrogate) is one ``ProfileError``; then the schema, then ``params`` with the backend's model."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from autotune.errors import ProfileError
from autotune.files import UnreadableFile, read_bounded
from autotune.profile.params import check_params, shown
from autotune.profile.schema import SCHEMA_VERSION, DeploymentProfile

if TYPE_CHECKING:
    from autotune.plugins.backend import Backend

MAX_PROFILE_BYTES = 16 * 2**20
"""Largest profile file read: real ones are a few kilobytes; this keeps an endless or huge file from filling memory."""
MAX_DEPTH = 64
"""Deepest nesting of JSON arrays and objects read (real profiles nest about five levels): deeper structures
would exhaust Python's recursion limit in validation, printing or export."""
HINT = "pass a profile written by `autotune run`"


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_PROFILE_BYTES`` (``files.read_bounded``: the kind checked
    before and after opening, no blocking on a FIFO); anything else is one ``ProfileError``."""
    try:
        return read_bounded(path, MAX_PROFILE_BYTES, "profile")
    except UnreadableFile as error:
        raise ProfileError(f"{error}; {HINT}") from None


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
