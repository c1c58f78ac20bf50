"""Checks at the plugin boundary: every value a plugin hands autotune is of the kind the hook promises.

A plugin that returns the wrong kind of value (a ``str`` where a ``Backend`` belongs, a list for a search
space, ``None`` for parameters) costs that plugin only: the checks here raise ``PluginFault``, one line
naming the plugin's method, what it returned and what it should have; callers turn it into one warning
and go on without that plugin. The conformance suite (``autotune.testing.conformance``) runs the same
checks, so a plugin's own tests find the fault before a user does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from autotune.errors import AutotuneError
from autotune.plugins.backend import Availability, Backend, Categorical, IntRange, Params, SearchSpace

if TYPE_CHECKING:
    from autotune.reporting import Reporter

T = TypeVar("T")

CHOICE_TYPES = (str, int, float, bool, type(None))
"""What a ``Categorical`` choice may be: values Optuna stores and JSON writes back unchanged."""


class PluginFault(AutotuneError):
    """A plugin returned a value of the wrong kind; the message names the method, the value and what is expected."""


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


def checked(value: Any, expected: type[T] | tuple[type, ...], where: str) -> T:
    """``value`` when it is an ``expected``, else ``PluginFault`` (``where``: ``"llamacpp.predict()"``)."""
    if not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise PluginFault(f"{where} returned {_shown(value)}, not {'an' if names[0] in 'AEIOU' else 'a'} {names}")
    return value  # type: ignore[return-value]


def checked_params(value: Any, where: str) -> Params:
    """A configuration: a dict with string keys."""
    params = checked(value, dict, where)
    if not all(isinstance(key, str) for key in params):
        raise PluginFault(f"{where} returned a dict whose keys are not all parameter names (str): {_shown(value)}")
    return dict(params)


def checked_space(value: Any, where: str) -> SearchSpace:
    """A search space: a non-empty dict of names to ``Categorical`` (non-empty, plain choices) or ``IntRange``."""
    space = checked(value, dict, where)
    if not space:
        raise PluginFault(f"{where} returned an empty search space; declare at least one parameter")
    for name, dimension in space.items():
        if not isinstance(name, str) or not name:
            raise PluginFault(f"{where} names a parameter {name!r}; names are non-empty strings")
        if isinstance(dimension, Categorical):
            if not isinstance(dimension.choices, tuple) or not dimension.choices:
                raise PluginFault(f"{where}: {name!r} has no choices (a non-empty tuple is needed)")
            odd = [c for c in dimension.choices if not isinstance(c, CHOICE_TYPES)
                   or (isinstance(c, float) and not math.isfinite(c))]
            if odd:
                raise PluginFault(f"{where}: {name!r} offers {_shown(odd[0])}; choices are str, int, finite float, "
                                  "bool or None")
        elif isinstance(dimension, IntRange):
            bounds = (dimension.low, dimension.high, dimension.step)
            if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) or dimension.step < 1 \
                    or dimension.low > dimension.high or (dimension.log and (dimension.low < 1 or dimension.step != 1)):
                raise PluginFault(f"{where}: {name!r} is {dimension!r}; an IntRange needs integers low ≤ high, step ≥ 1 "
                                  "(and low ≥ 1, step 1 when log)")
        else:
            raise PluginFault(f"{where}: {name!r} is {_shown(dimension)}, not a Categorical or an IntRange")
    return dict(space)


def outside(space: SearchSpace, params: Mapping[str, Any]) -> str | None:
    """Why ``params`` is not a configuration of ``space`` (a missing, extra or out-of-range value), or None."""
    for name, dimension in space.items():
        if name not in params:
            return f"it has no {name!r}"
        value = params[name]
        if isinstance(dimension, Categorical):
            if not any(value == choice and type(value) is type(choice) for choice in dimension.choices):
                return f"{name}={value!r} is not one of {dimension.choices}"
        elif not isinstance(value, int) or isinstance(value, bool) or not dimension.low <= value <= dimension.high \
                or (value - dimension.low) % dimension.step:
            return f"{name}={value!r} is not in {dimension.low}..{dimension.high} step {dimension.step}"
    extra = sorted(set(params) - set(space))
    return f"it has parameters the space does not: {', '.join(extra)}" if extra else None


def availability_of(backend: Backend) -> Availability:
    """``backend.availability()``; a check that raises or answers something else makes the backend unavailable."""
    try:
        return checked(backend.availability(), Availability, f"{backend.name}.availability()")
    except Exception as error:  # noqa: BLE001 - a plugin's bug costs its backend, never the command
        shown = str(error) if isinstance(error, PluginFault) else f"its plugin raised {error!r} in availability()"
        return Availability(available=False, reason=shown)


def warn_once(reporter: Reporter, plugin: str, message: str) -> None:
    """Warn about ``plugin``'s fault once per command (per reporter); its later faults are told as info lines.

    A plugin that breaks several ways (a starting point outside its space, then a ``predict`` of the wrong type)
    costs the user one warning to read, not one per symptom.
    """
    try:
        warned: set[str] = reporter.__dict__.setdefault("_plugin_faults_warned", set())
    except AttributeError:  # a reporter without an instance dict: every fault is a warning
        reporter.warn(message)
        return
    if plugin in warned:
        reporter.info(message)
    else:
        warned.add(plugin)
        reporter.warn(message)
