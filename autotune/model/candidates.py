"""The candidate models of a run: every ``--model`` resolved, folders of model files expanded, duplicates refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autotune.errors import InputError, ModelSourceError
from autotune.files import shown_path
from autotune.model.bundled import BUNDLED
from autotune.model.bundled import model_path as resolve_model
from autotune.model.source import detect_format

MODEL_FILE_SUFFIXES = (".gguf",)
"""Files a plain folder (one that is no model folder itself) contributes as candidates."""


def candidate_paths(arguments: Sequence[str] | None) -> list[Path]:
    """The models named by ``--model`` arguments, in the order given (none: the bundled default).

    A bundled name or a path is one candidate; a folder that is a model itself (HF, ONNX, OpenVINO, MLX) is one
    candidate, and any other folder stands for the model files directly in it (sorted by name). The same model
    named twice (by name, path or through a folder) is refused: it would be tuned twice and compete with itself;
    so is a candidate whose format cannot be told (``InputError``, one line).
    """
    if not arguments:
        return [resolve_model(None)]
    paths: list[Path] = []
    given_as: dict[Path, str] = {}
    for argument in arguments:
        for path in _expand(argument):
            key = path.resolve()
            if key in given_as:
                raise InputError(f"--model {shown_path(path)} is named twice (also by --model {given_as[key]!r}); "
                                 "give each candidate model once")
            given_as[key] = argument
            try:  # four bytes read: a file that is no model stops the run now, not after the others were tuned
                detect_format(path)
            except ModelSourceError as error:
                raise InputError(f"--model {argument!r}: {error}") from None
            paths.append(path)
    return paths


def _expand(argument: str) -> list[Path]:
    """One ``--model`` argument's candidates."""
    if argument in BUNDLED:
        return [resolve_model(argument)]
    path = resolve_model(argument)
    if not path.is_dir():
        return [path]
    try:
        detect_format(path)
        return [path]  # a model folder
    except ModelSourceError:
        pass
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(MODEL_FILE_SUFFIXES))
    except OSError as error:
        raise InputError(f"--model {shown_path(path)}: {error.strerror or error}; pass a readable folder") from None
    if not files:
        raise InputError(f"--model {shown_path(path)} is neither a model folder nor a folder of model files (no "
                         f"{', '.join(MODEL_FILE_SUFFIXES)} file in it); pass model files or a folder holding some")
    return files
