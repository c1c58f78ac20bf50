"""The measurement store: every figure kept under the key that determines it.

A measurement depends on the model (its content hash), the backend and its runtime version, the
machine (hardware fingerprint), the workload and the configuration — never on the budget, the
objective or which other backends were searched. So each trial's record is stored under exactly
that key, beside the Optuna studies in the same database, and every study is a view seeded from it:
a new budget, objective or backend subset reuses what was measured, a runtime upgrade makes old
figures *stale* (listed as such, measured again, never mixed in), and another machine's figures are
never used as this one's — they only choose where a new machine starts (``nearest_devices``).

Fleets: devices of one fingerprint share a PostgreSQL database. Before measuring, a worker claims the
configuration (a row whose primary key is the claim: the database lets exactly one insert win); the
claim is released when the record is stored, and taken over when its worker is gone — its process
no longer exists on this host, or its heartbeat (refreshed by a thread every ``HEARTBEAT_S``) stopped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
import sqlalchemy as sa

from autotune.errors import StorageError
from autotune.plugins.backend import Backend, runtime_version
from autotune.store.cache import key_digest
from autotune.store.storage import create_engine, default_storage, redact_url, schema_lock, storage_errors

STORE_SCHEMA = 1
"""Bumped when the tables change; a database written by a newer autotune is refused, not misread."""
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
"""A worker whose heartbeat is older than this is gone (killed, or its machine lost): its claims are free."""
STORED_FAILURES = ("cannot predict", "cannot run this model", "prepare failed")
"""Failure causes that hold whatever the budget: stored, so no worker tries them again. Crashes by a
signal are stored too (``killed by SIGILL`` …) except those in ``NOT_THE_CONFIGURATION``."""
NOT_THE_CONFIGURATION = ("killed by SIGKILL", "killed by SIGINT", "killed by SIGTERM", "killed by SIGHUP")
"""Deaths that say nothing about the configuration: SIGKILL (the OOM killer sends it too), and the signals that
interrupt a run from outside."""

metadata = sa.MetaData()
measurements = sa.Table(
    "autotune_measurements", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("workload", sa.String(32), nullable=False),
    sa.Column("backend", sa.String(64), nullable=False),
    sa.Column("runtime", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "trial" or "confirmation"
    sa.Column("config", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("measured_at", sa.Float, nullable=False),
    sa.UniqueConstraint("model_sha256", "fingerprint", "workload", "backend", "runtime", "kind", "config",
                        name="autotune_measurement_key"),
)
devices = sa.Table(
    "autotune_devices", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("summary", sa.Text, nullable=False),
)
workers = sa.Table(
    "autotune_workers", metadata,
    sa.Column("worker", sa.String(300), primary_key=True),  # host:pid
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)
claims = sa.Table(
    "autotune_claims", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(64), nullable=False),  # what the claim belongs to: one search's scope
    sa.Column("worker", sa.String(300), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
schema = sa.Table(
    "autotune_store_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
)


@dataclass(frozen=True)
class Scope:
    """What every measurement of one search shares: model, machine and workload (its JSON, as measured)."""

    model_sha256: str
    model_name: str
    fingerprint: str
    workload: dict[str, Any]

    @property
    def workload_key(self) -> str:
        return key_digest(self.workload, 32)

    @property
    def key(self) -> str:
        """The whole scope in one digest: what a fleet's claims of one search share."""
        return key_digest({"model": self.model_sha256, "machine": self.fingerprint, "workload": self.workload_key}, 48)


@dataclass(frozen=True)
class StoredRecord:
    """One stored trial record (``TrialRecord`` fields as JSON) with where and when it was measured."""

    backend: str
    runtime: str
    record: dict[str, Any]
    host: str
    measured_at: float
    fingerprint: str
    model_name: str = ""
    model_sha256: str = ""
    stale: bool = False
    """Measured with another runtime version than the one installed now."""

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.measured_at)


def storable(record: Mapping[str, Any]) -> bool:
    """True for a record whose outcome does not depend on the budget, the objective or the other trials.

    A measurement taken while other processes took the cores (``context["busy"]["disturbed"]``) is that
    run's, not the configuration's: it stays in the run's study, marked, and a later run measures it again.
    """
    if record.get("status") == "measured":
        measurement = record.get("measurement")
        context = measurement.get("context") if isinstance(measurement, Mapping) else None
        busy = context.get("busy") if isinstance(context, Mapping) else None
        return not (isinstance(busy, Mapping) and busy.get("disturbed") is True)
    if record.get("status") != "failed":
        return False  # skipped on a prediction for this budget, or screened out against this run's best
    cause = str(record.get("cause") or "")
    # SIGINT, SIGTERM and SIGHUP stop a worker from outside (an interruption, no result: measure/worker.py raises
    # KeyboardInterrupt for them), and a record from before that must not be kept either.
    return cause in STORED_FAILURES or (cause.startswith("killed by SIG") and cause not in NOT_THE_CONFIGURATION)


def config_digest(config_key: str) -> str:
    return key_digest(config_key, 32)


class MeasurementStore:
    """The store in the database at ``url`` (default: the SQLite file of the studies). Thread-safe."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_storage()
        self.shown = redact_url(self.url)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        with storage_errors(self.url):
            self.engine = create_engine(self.url)
            with schema_lock(self.engine):
                metadata.create_all(self.engine, checkfirst=True)
                self._check_schema()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._beating: threading.Thread | None = None

    def _check_schema(self) -> None:
        with self.engine.begin() as connection:
            found = connection.execute(sa.select(sa.func.max(schema.c.version))).scalar()
            if found is None:
                connection.execute(schema.insert().values(version=STORE_SCHEMA))
            elif found > STORE_SCHEMA:
                raise StorageError(f"--storage {self.shown} holds a measurement store of schema {found}, written by a "
                                   f"newer autotune (this one reads {STORE_SCHEMA}); upgrade autotune or use another "
                                   "storage")

    # ---- measurements --------------------------------------------------------------------------------------------

    def put(self, scope: Scope, backend: str, runtime: str, config_key: str, record: Mapping[str, Any],
            kind: str = "trial") -> None:
        """Store ``record`` under its key, replacing an earlier one of the same key (a re-measurement)."""
        row = {"model_sha256": scope.model_sha256, "model_name": scope.model_name[:255],
               "fingerprint": scope.fingerprint, "workload": scope.workload_key, "backend": backend,
               "runtime": runtime[:255], "kind": kind, "config": config_digest(config_key),
               "status": str(record.get("status", kind)), "record": json.dumps(record, default=str),
               "host": socket.gethostname(), "measured_at": time.time()}
        key = ("model_sha256", "fingerprint", "workload", "backend", "runtime", "kind", "config")
        with storage_errors(self.url), self.engine.begin() as connection:
            updated = connection.execute(
                measurements.update().where(*(measurements.c[k] == row[k] for k in key))
                .values(status=row["status"], record=row["record"], host=row["host"], measured_at=row["measured_at"]))
            if updated.rowcount == 0:
                try:
                    with connection.begin_nested():
                        connection.execute(measurements.insert().values(**row))
                except sa.exc.IntegrityError:  # another worker stored it between the update and the insert
                    pass

    def records(self, scope: Scope, runtimes: Mapping[str, str], kind: str = "trial") -> list[StoredRecord]:
        """The stored records of ``scope`` for the backends in ``runtimes`` (name → installed runtime version).

        Records of another runtime version come back with ``stale=True`` and only when no current one
        exists for the same configuration; callers must never mix them with current ones.
        """
        if not runtimes:
            return []
        query = (sa.select(measurements).where(
            measurements.c.model_sha256 == scope.model_sha256, measurements.c.fingerprint == scope.fingerprint,
            measurements.c.workload == scope.workload_key, measurements.c.kind == kind,
            measurements.c.backend.in_(list(runtimes))).order_by(measurements.c.measured_at))
        with storage_errors(self.url), self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        current = {(row["backend"], row["config"]) for row in rows if row["runtime"] == runtimes[row["backend"]]}
        found = []
        for row in rows:
            stale = row["runtime"] != runtimes[row["backend"]]
            if stale and (row["backend"], row["config"]) in current:
                continue
            found.append(_stored(row, stale))
        return found

    def lookup(self, scope: Scope, backend: str, runtime: str, config_key: str, kind: str = "trial") -> StoredRecord | None:
        """The current record of one configuration, or None."""
        query = sa.select(measurements).where(
            measurements.c.model_sha256 == scope.model_sha256, measurements.c.fingerprint == scope.fingerprint,
            measurements.c.workload == scope.workload_key, measurements.c.backend == backend,
            measurements.c.runtime == runtime, measurements.c.kind == kind,
            measurements.c.config == config_digest(config_key))
        with storage_errors(self.url), self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _stored(row, False) if row else None

    def everything(self, model_sha256: str | None = None, fingerprint: str | None = None) -> list[StoredRecord]:
        """Every stored trial record (optionally of one model or machine), oldest first, stale or not unknown here."""
        query = sa.select(measurements).where(measurements.c.kind == "trial").order_by(measurements.c.measured_at)
        if model_sha256:
            query = query.where(measurements.c.model_sha256 == model_sha256)
        if fingerprint:
            query = query.where(measurements.c.fingerprint == fingerprint)
        with storage_errors(self.url), self.engine.connect() as connection:
            return [_stored(row, False) for row in connection.execute(query).mappings().all()]

    # ---- devices -------------------------------------------------------------------------------------------------

    def remember_device(self, fingerprint: str, summary: Mapping[str, Any]) -> None:
        """Keep what the warm start compares machines by (architecture, features, cores, bandwidth)."""
        text = json.dumps(summary, sort_keys=True, default=str)
        with storage_errors(self.url), self.engine.begin() as connection:
            if connection.execute(devices.update().where(devices.c.fingerprint == fingerprint)
                                  .values(summary=text)).rowcount == 0:
                try:
                    with connection.begin_nested():
                        connection.execute(devices.insert().values(fingerprint=fingerprint, summary=text))
                except sa.exc.IntegrityError:
                    pass

    def devices(self) -> dict[str, dict[str, Any]]:
        """Every machine the store has figures from: fingerprint → summary."""
        with storage_errors(self.url), self.engine.connect() as connection:
            return {row.fingerprint: json.loads(row.summary) for row in connection.execute(sa.select(devices))}

    def records_elsewhere(self, model_sha256: str, workload_key: str, fingerprint: str) -> list[StoredRecord]:
        """Measured trial records of this model and workload from *other* machines (for the warm start only)."""
        query = sa.select(measurements).where(
            measurements.c.model_sha256 == model_sha256, measurements.c.workload == workload_key,
            measurements.c.kind == "trial", measurements.c.status == "measured",
            measurements.c.fingerprint != fingerprint)
        with storage_errors(self.url), self.engine.connect() as connection:
            return [_stored(row, False) for row in connection.execute(query).mappings().all()]

    # ---- claims --------------------------------------------------------------------------------------------------

    def claim(self, key: str, scope: str = "") -> bool:
        """Claim ``key`` for this process; False while a live worker holds it. A dead worker's claim is taken over."""
        self._beat()
        with storage_errors(self.url):
            for _ in range(2):
                try:
                    with self.engine.begin() as connection:
                        connection.execute(claims.insert().values(key=key, scope=scope, worker=self.worker,
                                                                 claimed_at=time.time()))
                    with self._lock:
                        self._held.add(key)
                    return True
                except sa.exc.IntegrityError:
                    if not self._take_over(key):
                        return False
        return False

    def release(self, key: str) -> None:
        """Give up a claim (after the record is stored, or when the trial ended without one)."""
        with self._lock:
            self._held.discard(key)
        with storage_errors(self.url), self.engine.begin() as connection:
            connection.execute(claims.delete().where(claims.c.key == key, claims.c.worker == self.worker))

    def others_measuring(self, scope: str) -> int:
        """How many claims of ``scope`` live workers other than this one hold now."""
        with storage_errors(self.url), self.engine.connect() as connection:
            holders = connection.execute(sa.select(claims.c.worker).where(claims.c.scope == scope,
                                                                          claims.c.worker != self.worker)).scalars()
            return sum(1 for worker in list(holders) if self.alive(worker))

    def alive(self, worker: str) -> bool:
        """Whether the worker ``host:pid`` still runs: its process exists on this host, or its heartbeat is fresh."""
        host, _, pid = worker.rpartition(":")
        if host == socket.gethostname():
            return pid.isdigit() and psutil.pid_exists(int(pid))
        with storage_errors(self.url), self.engine.connect() as connection:
            beat = connection.execute(sa.select(workers.c.heartbeat).where(workers.c.worker == worker)).scalar()
        return beat is not None and time.time() - beat < STALE_AFTER_S

    def _take_over(self, key: str) -> bool:
        """Delete the claim on ``key`` when its worker is gone; True when it was (the caller inserts again)."""
        with self.engine.connect() as connection:
            holder = connection.execute(sa.select(claims.c.worker).where(claims.c.key == key)).scalar()
        if holder is None:
            return True  # released in between
        if holder == self.worker or self.alive(holder):
            return False
        with self.engine.begin() as connection:  # only that worker's claim: another taker may have won already
            connection.execute(claims.delete().where(claims.c.key == key, claims.c.worker == holder))
        return True

    def join(self) -> None:
        """Announce this process as a live worker: a heartbeat row refreshed every ``HEARTBEAT_S`` by a thread."""
        with storage_errors(self.url):
            self._beat()

    def _beat(self) -> None:
        """Start this process's heartbeat thread once (daemon: it dies with the process, which is the point)."""
        if self._beating is not None and self._beating.is_alive():
            return
        self._write_heartbeat()
        self._beating = threading.Thread(target=self._heartbeat_loop, name="autotune-heartbeat", daemon=True)
        self._beating.start()

    def _write_heartbeat(self) -> None:
        host, _, pid = self.worker.rpartition(":")
        with self.engine.begin() as connection:
            if connection.execute(workers.update().where(workers.c.worker == self.worker)
                                  .values(heartbeat=time.time())).rowcount == 0:
                try:
                    with connection.begin_nested():
                        connection.execute(workers.insert().values(worker=self.worker, host=host, pid=int(pid),
                                                                   heartbeat=time.time()))
                except sa.exc.IntegrityError:
                    pass

    def _heartbeat_loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                self._write_heartbeat()
            except Exception:  # noqa: BLE001 - a missed beat only risks a takeover after STALE_AFTER_S
                continue

    def close(self) -> None:
        """Release every claim still held and dispose of the connections."""
        for key in list(self._held):
            self.release(key)
        self.engine.dispose()


def _stored(row: Any, stale: bool) -> StoredRecord:
    return StoredRecord(backend=row["backend"], runtime=row["runtime"], record=json.loads(row["record"]),
                        host=row["host"], measured_at=row["measured_at"], fingerprint=row["fingerprint"],
                        model_name=row["model_name"], model_sha256=row["model_sha256"], stale=stale)


def runtimes_of(backends: Iterable[Backend]) -> dict[str, str]:
    """Backend name → installed runtime version (``Backend.version()``), the store's notion of "current".

    A plugin whose version check raises gets a version no stored figure has: its figures are never taken as current.
    """
    return {backend.name: runtime_version(backend) for backend in backends}
