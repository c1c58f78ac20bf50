"""One run's side of a search other workers may share: a claim around each measurement (no two workers measure
one configuration), each record kept in the store, and waiting for the others' last figures."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import optuna

from autotune.context import RunContext
from autotune.plugins.backend import SearchSpace
from autotune.record import TrialRecord
from autotune.search.queue import abandoned
from autotune.search.trials import add_record, records
from autotune.store.cache import key_digest
from autotune.store.measurements import MeasurementStore, Scope, storable
from autotune.store.view import describe_origin


def claim_key(scope: Scope, backend: str, runtime: str, config_key: str) -> str:
    """The claim a worker holds while it measures one configuration of one search scope."""
    return key_digest({"scope": scope.key, "backend": backend, "runtime": runtime, "config": config_key}, 48)


def keep(store: MeasurementStore, scope: Scope, runtime: str, record: TrialRecord) -> None:
    """Store ``record`` when its outcome holds whatever the budget (see ``store.storable``)."""
    data = record.to_json()
    if storable(data):
        store.put(scope, record.backend, runtime, record.key, data)


class SharedSearch:
    """One run's side of a search other workers may share: claims around measuring, records into the store."""

    def __init__(self, context: RunContext, study: optuna.Study, store: MeasurementStore, scope: Scope,
                 runtimes: Mapping[str, str], spaces: dict[str, SearchSpace]) -> None:
        self.context, self.study, self.store, self.scope, self.runtimes = context, study, store, scope, runtimes
        self.spaces = spaces

    def settle(self, timeout_s: float) -> int:
        """Wait (up to ``timeout_s``) until no other live worker measures in this scope; return how many still do.

        So that every worker of a fleet chooses from the same evidence: the last measurements in flight
        elsewhere land in the shared study before this run picks its answer.
        """
        deadline = time.monotonic() + timeout_s
        while (busy := self.store.others_measuring(self.scope.key) + self._others_running()) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        return busy

    def _others_running(self) -> int:
        """Trials of this study other live workers hold (asked, maybe not yet claimed); this run's are all told."""
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return sum(1 for trial in running if not abandoned(trial, self.store.alive))

    @contextmanager
    def claimed(self, backend: str, key: str, done: dict[str, TrialRecord]) -> Iterator[bool]:
        """Yield True when this run may measure ``key`` (claimed for it), False when it is known or being measured.

        A configuration another worker finished since this run started is added to ``done`` (and, from the
        store, to the study), so the caller never measures it twice.
        """
        if key in done:
            yield False
            return
        claim = claim_key(self.scope, backend, self.runtimes[backend], key)
        if not self.store.claim(claim, self.scope.key):
            yield False
            return
        try:
            finished = {record.key: record for record in records(self.study)}
            stored = self.store.lookup(self.scope, backend, self.runtimes[backend], key)
            if key in finished:
                done[key] = finished[key]
            elif stored is not None:
                done[key] = TrialRecord.from_json(stored.record)
                add_record(self.study, done[key], self.spaces, self.context.budget, list(self.runtimes),
                           origin=describe_origin(stored))
            yield key not in done
        finally:
            self.store.release(claim)

    def keep(self, record: TrialRecord) -> None:
        """Store what this run measured (see ``keep``)."""
        keep(self.store, self.scope, self.runtimes[record.backend], record)
