"""A backend's search space as Optuna sees it: a value of each dimension asked for, namespaced by backend
(``llamacpp.n_threads``), and the distribution of each namespaced parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from autotune.plugins.backend import Backend, Categorical, IntRange, Params, SearchSpace


def suggest_params(trial: optuna.Trial, backend: Backend, space: SearchSpace) -> Params:
    """Ask Optuna for a value of each dimension, namespaced by backend (``llamacpp.n_threads``)."""
    params: Params = {}
    for name, dimension in space.items():
        key = f"{backend.name}.{name}"
        if isinstance(dimension, Categorical):
            params[name] = trial.suggest_categorical(key, list(dimension.choices))
        elif isinstance(dimension, IntRange):
            params[name] = trial.suggest_int(key, dimension.low, dimension.high, step=dimension.step, log=dimension.log)
        else:  # pragma: no cover - the Dimension union is closed
            raise TypeError(f"unknown search dimension {dimension!r}")
    return params


def distributions(backends: Sequence[str], spaces: dict[str, SearchSpace]) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every parameter ``suggest_params`` asks for, by its namespaced key."""
    found: dict[str, BaseDistribution] = {"backend": CategoricalDistribution(list(backends))}
    for backend in backends:
        for name, dimension in spaces[backend].items():
            found[f"{backend}.{name}"] = (
                CategoricalDistribution(list(dimension.choices)) if isinstance(dimension, Categorical) else
                IntDistribution(dimension.low, dimension.high, step=dimension.step, log=dimension.log))
    return found


def within_distribution(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one ``distribution`` can produce (a stored record outside it is not added)."""
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
