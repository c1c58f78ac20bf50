"""What a backend said it cannot run: remembered, so the next run skips it in milliseconds.

A backend that refuses a model (``BackendUnavailable`` from a conversion or a build: an architecture
its converter cannot handle) refuses it again next time, after minutes of converting. The refusal is
kept under the backend's runtime build and the model's content hash: upgrading the runtime (or the
model changing) makes it try again.
"""

from __future__ import annotations

import json
from pathlib import Path

from autotune.plugins.backend import Backend, runtime_build
from autotune.store.cache import cache_dir, key_digest, write_json_atomically


def _path(backend: Backend, model_sha256: str) -> Path:
    key = {"backend": backend.name, "runtime": runtime_build(backend), "model": model_sha256}
    return cache_dir() / "refusals" / f"{backend.name}-{key_digest(key)}.json"


def remember(backend: Backend, model_sha256: str, reason: str) -> None:
    """Record that ``backend`` cannot run the model with this content hash, and why."""
    write_json_atomically(_path(backend, model_sha256), {"reason": reason})


def recall(backend: Backend, model_sha256: str) -> str | None:
    """Why ``backend`` refused this model before (with this runtime build), or None."""
    try:
        reason = json.loads(_path(backend, model_sha256).read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return str(reason) if reason else None
