"""Several candidate models in one run: each tuned as a single model is, then one chosen.

Every candidate gets its own study and its own ``--trials`` (trials are per model: a study, its store figures and
its resume belong to one model file, and a shared pool would let the first candidate starve the others). Its KL is
measured from its own source; what fits the budget is decided in its own run. The choice between models is
``decide.model_choice``'s. The chosen model's profile is the answer, with every candidate listed in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autotune.budget import Budget
from autotune.decide.model_choice import MODEL_CHOICE_NOTES, best_of, choose_model, why_not
from autotune.errors import (
    AutotuneError,
    ForeignHardware,
    InputError,
    NothingFits,
    PluginError,
    StorageError,
    one_line,
)
from autotune.hardware import Hardware
from autotune.model.source import cached_content_hash, detect_format
from autotune.options import TuneOptions
from autotune.plugins.manager import PluginManager
from autotune.profile.schema import CandidateModel, ModelInfo
from autotune.reporting import Reporter
from autotune.search.assemble import TuneResult
from autotune.workload import Workload

RUN_WIDE = (ForeignHardware, InputError, PluginError, StorageError)
"""Errors about the run, not one candidate (another machine's hardware, a bad option or storage): they stop it."""


@dataclass
class ModelChoice:
    """A multi-model run's answer: the chosen model's result (its profile lists every candidate) and each
    candidate's own result (None where nothing of it fits)."""

    chosen: TuneResult
    candidates: list[CandidateModel]
    results: dict[Path, TuneResult | None]


def tune_models(model_paths: Sequence[Path], budget: Budget, workload: Workload, options: TuneOptions, *,
                manager: PluginManager, hardware: Hardware, reporter: Reporter) -> ModelChoice:
    """Tune every candidate in turn and choose among those with a configuration within ``budget``.

    A candidate nothing of which fits (or that no backend can tune) is kept with its reason; ``NothingFits``
    is raised, naming each candidate's reason, only when no candidate fits.
    """
    from autotune.tuner import Tuner  # the tuning loop imports Optuna: only when a run starts

    results: dict[Path, TuneResult | None] = {}
    candidates: list[CandidateModel] = []
    for index, path in enumerate(model_paths, 1):
        reporter.info(f"candidate model {index}/{len(model_paths)}: {path.name}")
        try:
            result = Tuner(path, budget, workload, options, manager=manager, hardware=hardware,
                           reporter=reporter).run()
        except RUN_WIDE:
            raise
        except AutotuneError as error:  # nothing of it fits, or no backend reads it: an answer about this candidate
            reason = one_line(str(error))
            reporter.warn(f"{path.name}: {reason}")
            results[path] = None
            candidates.append(CandidateModel(model=_model_info(path), reason=reason))
            continue
        results[path] = result
        candidates.append(CandidateModel(model=result.profile.model, best=best_of(result.profile)))
    fitting = [c for c in candidates if c.best is not None]
    if not fitting:
        raise NothingFits("no candidate model fits: " + "; ".join(f"{c.model.path}: {c.reason}" for c in candidates))
    chosen = choose_model(candidates, options.objective)
    marked = [c.model_copy(update={"chosen": c is chosen,
                                   "reason": c.reason if c.best is None or c is chosen
                                   else why_not(c, chosen, options.objective)})
              for c in candidates]
    winner = results[next(p for p, c in zip(model_paths, candidates, strict=True) if c is chosen)]
    assert winner is not None
    profile = winner.profile.model_copy(update={"candidates": marked,
                                                "model_choice": MODEL_CHOICE_NOTES[options.objective]})
    return ModelChoice(chosen=replace(winner, profile=profile), candidates=marked, results=results)


def _model_info(path: Path) -> ModelInfo:
    """What the profile says of a candidate that was not tuned (its format and hash when they can be read)."""
    try:
        return ModelInfo(path=str(path), format=detect_format(path), sha256=cached_content_hash(path))
    except (AutotuneError, OSError):
        return ModelInfo(path=str(path), format="unknown", sha256="")
