"""Where confirmation rounds are kept: the study's attributes, and the store (any budget picking the same
finalists reuses them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from autotune.store.cache import key_digest
from autotune.store.measurements import MeasurementStore, Scope


class RoundsMemo:
    """Where confirmation rounds are kept: the study's attributes, and the store (any budget reuses them)."""

    def __init__(self, study: optuna.Study | None, store: MeasurementStore | None = None, scope: Scope | None = None,
                 runtimes: Mapping[str, str] | None = None) -> None:
        self.study, self.store, self.scope = study, store, scope
        self.runtime = key_digest(dict(runtimes or {}), 32)

    def get(self, key: str) -> Any:
        """The rounds stored under ``key``, or None."""
        if self.study is not None and key in self.study.user_attrs:
            return self.study.user_attrs[key]
        if self.store is not None and self.scope is not None:
            found = self.store.lookup(self.scope, "confirmation", self.runtime, key, kind="confirmation")
            return found.record if found is not None else None
        return None

    def put(self, key: str, rounds: dict[str, Any]) -> None:
        """Keep the rounds of ``key`` in the study and the store."""
        if self.study is not None:
            self.study.set_user_attr(key, rounds)
        if self.store is not None and self.scope is not None:
            self.store.put(self.scope, "confirmation", self.runtime, key, rounds, kind="confirmation")
