"""Render an MLX deployment profile for the tools people run: ``mlx_lm.generate``, ``mlx_lm.server``, Python.

Each render starts with ``autotune.evidence_comment`` (the profile and figures it came from) and reproduces
the measured runtime settings (KV-cache bits and group size, quantized from the first token, and the prefill
step when it was tuned) for the converted folder. Paths are quoted so the text is safe to paste: ``shlex``
quoting for the shell, ``repr`` for Python.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from autotune import Exporter, evidence_comment
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
    return evidence_comment(profile) + shlex.join(argv) + "\n"


def render_server(profile: DeploymentProfile) -> str:
    """An ``mlx_lm.server`` command line (OpenAI-compatible HTTP server on localhost)."""
    argv = ["mlx_lm.server", "--model", profile.artifact.path, "--host", SERVER_HOST, "--port", str(SERVER_PORT),
            "--max-tokens", str(profile.workload.gen_tokens), *_flags(profile)]
    return evidence_comment(profile) + shlex.join(argv) + "\n"


PYTHON_TEMPLATE = '''\
# MLX ({label}) as measured by autotune.
import mlx_lm

model, tokenizer = mlx_lm.load({model_dir!r})
SETTINGS = {settings!r}  # the runtime settings autotune measured


def generate(prompt, max_new_tokens={tokens}):
    """Greedy reply to ``prompt`` (at most ``max_new_tokens`` tokens) with the measured settings."""
    return mlx_lm.generate(model, tokenizer, prompt=prompt, max_tokens=max_new_tokens, **SETTINGS)


if __name__ == "__main__":  # usage
    print(generate({prompt!r}))
'''


def generate_settings(profile: DeploymentProfile) -> dict[str, Any]:
    """The keyword arguments of ``mlx_lm.generate`` for the measured settings, mlx-lm's defaults left out."""
    kwargs = settings(profile).generate_kwargs()
    if kwargs.get("prefill_step_size") == DEFAULT_PREFILL_STEP:
        del kwargs["prefill_step_size"]
    return kwargs


def render_python(profile: DeploymentProfile) -> str:
    """A Python snippet: mlx-lm's ``load``, a ``generate`` with the measured settings, and one prompt."""
    return evidence_comment(profile) + PYTHON_TEMPLATE.format(
        label=one_line(profile.artifact.label), model_dir=str(profile.artifact.path),
        settings=generate_settings(profile), tokens=profile.workload.gen_tokens, prompt=DEFAULT_PROMPT)


EXPORTERS = (
    Exporter(name="mlx-lm-generate", description="an mlx_lm.generate command line", render=render_generate,
             backends=BACKENDS),
    Exporter(name="mlx-lm-server", description="an mlx_lm.server command line (OpenAI-compatible HTTP)",
             render=render_server, backends=BACKENDS),
    Exporter(name="mlx-python", description="a Python snippet with mlx_lm.load and generate", render=render_python,
             backends=BACKENDS),
)
"""The exporters this plugin contributes."""
