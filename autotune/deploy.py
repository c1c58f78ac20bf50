"""``autotune.load(profile)``: the runtime object a profile describes, after checking it still describes this deployment."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from autotune.errors import ProfileError
from autotune.model.source import cached_content_hash
from autotune.plugins.manager import PluginManager, get_plugin_manager
from autotune.profile.reading import load_profile


class ProfileMismatch(UserWarning):
    """The profile was measured with another runtime version or on another machine than this one."""


def load(profile_path: Path | str, *, strict: bool = False, manager: PluginManager | None = None) -> Any:
    """Load the model as ``profile_path`` says, configured with its tuned settings, ready to generate.

    The backend's plugin builds the object: a ``llama_cpp.Llama`` (llama.cpp), a ``GenaiDeployment`` holding the
    ``onnxruntime_genai`` model and tokenizer (ONNX Runtime), an ``openvino_genai.LLMPipeline`` (OpenVINO), an
    ``MlxDeployment`` holding mlx-lm's model and tokenizer (MLX). Before that: the
    deployed file must still be the one measured (its sha256 for a file used as is) — else
    ``ProfileError``; a different runtime version or machine fingerprint warns (``ProfileMismatch``),
    or raises ``ProfileError`` with ``strict=True``: the figures in the profile may not hold here.
    """
    profile = load_profile(Path(profile_path))
    manager = manager or get_plugin_manager()
    backend = manager.backend(profile.backend.name)
    artifact = Path(profile.artifact.path)
    if not artifact.exists():
        raise ProfileError(f"{profile_path}: the model {artifact} it deploys is gone; run `autotune run` again")
    if artifact == Path(profile.model.path) and cached_content_hash(artifact) != profile.model.sha256:
        raise ProfileError(f"{profile_path}: {artifact} changed since it was measured (sha256 differs); "
                           "run `autotune run` again for this file")
    problems = []
    version = backend.version()
    if version != profile.backend.version:
        problems.append(f"it was measured with {profile.backend.name} {profile.backend.version}, this is {version}")
    from autotune.probe.machine import probe_here

    here = probe_here(manager, measure_bandwidth=False).fingerprint
    measured_on = str(profile.hardware.get("fingerprint", ""))
    if measured_on != here:
        problems.append(f"it was measured on machine {measured_on[:8]}, this is {here[:8]}")
    if problems:
        message = f"{profile_path}: {'; '.join(problems)} — its figures may not hold here"
        if strict:
            raise ProfileError(message + " (strict)")
        warnings.warn(message, ProfileMismatch, stacklevel=2)
    return backend.load_profile(profile)
