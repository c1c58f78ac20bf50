"""Render an MLX deployment profile for the tools people run: ``mlx_lm.generate``, ``mlx_lm.server``, Python.

Each render reproduces the measured runtime settings (KV-cache bits and group size, quantized
from the first token, and the prefill step when it was tuned) for the converted folder. Paths are
quoted so the text is safe to paste: ``shlex`` quoting for the shell, ``repr`` for Python.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from autotune import Exporter
from autotune.errors import one_line

from .params import mlx_params
from .settings import DEFAULT_PREFILL_STEP, RuntimeSettings

if TYPE_CHECKING:
    from autotune import DeploymentProfile

BACKENDS = ("mlx",)
DEFAULT_PROMPT = "Hello"
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 8080


def settings(profile: DeploymentProfile) -> RuntimeSettings:
    """The runtime settings a profile measured, from its validated parameters (``ProfileError`` names a bad one)."""
    params = mlx_params(profile.params)
    return RuntimeSettings(kv_bits=params.kv_bits, kv_group_size=profile.artifact.details.get("kv_group_size"),
                           prefill_step_size=params.prefill_step_size)


def _flags(profile: DeploymentProfile) -> list[str]:
    """mlx-lm command-line flags for the measured settings (shared by generate and server)."""
    s = settings(profile)
    flags: list[str] = []
    if s.kv_bits < 16:
        flags += ["--kv-bits", str(s.kv_bits), "--kv-group-size", str(s.kv_group_size), "--quantized-kv-start", "0"]
    if s.prefill_step_size != DEFAULT_PREFILL_STEP:
        flags += ["--prefill-step-size", str(s.prefill_step_size)]
    return flags


def render_generate(profile: DeploymentProfile) -> str:
    """An ``mlx_lm.generate`` command line (greedy, as measured; replace the prompt)."""
    argv = ["mlx_lm.generate", "--model", profile.artifact.path, "--max-tokens", str(profile.workload.gen_tokens),
            *_flags(profile), "--prompt", DEFAULT_PROMPT]
    return shlex.join(argv) + "\n"


def render_server(profile: DeploymentProfile) -> str:
    """An ``mlx_lm.server`` command line (OpenAI-compatible HTTP server on localhost)."""
    argv = ["mlx_lm.server", "--model", profile.artifact.path, "--host", SERVER_HOST, "--port", str(SERVER_PORT),
            "--max-tokens", str(profile.workload.gen_tokens), *_flags(profile)]
    return shlex.join(argv) + "\n"


def render_python(profile: DeploymentProfile) -> str:
    """A Python snippet with mlx-lm's ``load`` and ``generate`` and the measured settings."""
    kwargs: dict[str, Any] = {"max_tokens": profile.workload.gen_tokens, **settings(profile).generate_kwargs()}
    if kwargs.get("prefill_step_size") == DEFAULT_PREFILL_STEP:
        del kwargs["prefill_step_size"]
    arguments = "".join(f", {name}={value!r}" for name, value in kwargs.items())
    return (
        f"# MLX ({one_line(profile.artifact.label)}) as measured by autotune.\n"
        "from mlx_lm import generate, load\n\n"
        f"model, tokenizer = load({str(profile.artifact.path)!r})\n"
        f"text = generate(model, tokenizer, prompt={DEFAULT_PROMPT!r}{arguments})\n"
        "print(text)\n"
    )


EXPORTERS = (
    Exporter(name="mlx-lm-generate", description="an mlx_lm.generate command line", render=render_generate,
             backends=BACKENDS),
    Exporter(name="mlx-lm-server", description="an mlx_lm.server command line (OpenAI-compatible HTTP)",
             render=render_server, backends=BACKENDS),
    Exporter(name="mlx-python", description="a Python snippet with mlx_lm.load and generate", render=render_python,
             backends=BACKENDS),
)
"""The exporters this plugin contributes."""
