"""What a study measures next, and who measures it: queued configurations, claimed and abandoned trials.

A configuration is queued once (an interrupted one again, since it has no result); a running trial
names its owner (host and pid), so a later run or a live fleet worker can tell it was abandoned.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from autotune.plugins.backend import Categorical, Params, SearchSpace
from autotune.record import TrialRecord, config_key
from autotune.search.trials import RECORD_ATTR
from autotune.store.measurements import STALE_AFTER_S


def enqueue(study: optuna.Study, backend: str, params: Params) -> None:
    """Queue a configuration to be measured first, unless the study has it queued, running or with a result.

    Not Optuna's ``skip_if_exists``: that also matches a trial that was interrupted (kill -9, Ctrl-C, SIGTERM,
    a dead fleet worker) and so has no result, and the configuration in flight would never be measured again.
    """
    flat = {"backend": backend, **{f"{backend}.{k}": v for k, v in params.items()}}
    for trial in study.get_trials(deepcopy=False):
        if trial.system_attrs.get("fixed_params", trial.params) == flat and not interrupted(trial):
            return
    study.enqueue_trial(flat)


def interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` ended without a result of its own: it was interrupted, or skipped as a repeat of another
    (a configuration then known is never measured twice: ``done`` and the store's claims see to that)."""
    return trial.state.is_finished() and RECORD_ATTR not in trial.user_attrs


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue the configuration of an interrupted ``trial`` again, so that the next ask measures it."""
    frozen = study._storage.get_trial(trial._trial_id) if isinstance(trial, optuna.Trial) else trial
    params = frozen.system_attrs.get("fixed_params", frozen.params)
    backend = params.get("backend")
    if isinstance(backend, str) and len(params) > 1:  # else it was stopped before it had a configuration
        enqueue(study, backend, {k.removeprefix(f"{backend}."): v for k, v in params.items() if k != "backend"})


def enqueue_unseen(study: optuna.Study, backends: dict[str, Any], spaces: dict[str, SearchSpace],
                   done: dict[str, TrialRecord], dropped: dict[str, str], rng: random.Random) -> None:
    """After a repeat, queue a random configuration not tried yet (small spaces exhaust quickly).

    ``backends`` maps names to resolved backends (anything with a ``backend`` attribute).
    """
    live = sorted(set(backends) - set(dropped))
    for _ in range(64 if live else 0):
        name = rng.choice(live)
        params: Params = {}
        for dim_name, dim in spaces[name].items():
            params[dim_name] = (rng.choice(list(dim.choices)) if isinstance(dim, Categorical)
                                else rng.randrange(dim.low, dim.high + 1, dim.step))
        try:
            key = config_key(name, backends[name].backend.canonical_params(params))
        except Exception:  # noqa: BLE001 - the loop drops the backend when it asks for this configuration
            key = None
        if key not in done:
            enqueue(study, name, params)
            return


def mark_abandoned(study: optuna.Study, alive: Callable[[str], bool]) -> int:
    """Fail trials left RUNNING by a run that is gone (``alive("host:pid")`` is False), never a live one's, and
    queue their configurations again: an interrupted measurement is no result, so it is measured again."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if abandoned(trial, alive):
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted before it finished")
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker marked it at the same moment
            count += 1
            requeue(study, trial)
    return count


def abandoned(trial: optuna.trial.FrozenTrial, alive: Callable[[str], bool]) -> bool:
    """Whether a RUNNING trial's run is gone: its owner is not alive, or it never got an owner in ``STALE_AFTER_S``."""
    owner = trial.user_attrs.get("owner")
    if owner is None:  # asked a moment ago and not yet claimed, or abandoned in that moment
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() >= STALE_AFTER_S
    return not alive(f"{owner.get('host')}:{owner.get('pid')}")


def claim(trial: optuna.Trial) -> None:
    """Mark a running trial as this process's, so a later run can tell it was abandoned."""
    trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid()})
