"""Exporters for ``onnxruntime`` profiles: the genai_config.json settings, a Python snippet running them, and Foundry Local.

Every export but ``genai-config`` starts with ``autotune.evidence_comment``: the lines naming the profile and
figures it came from. ``genai-config`` is JSON that onnxruntime-genai parses strictly: a comment or an unknown
key makes it refuse the file (onnxruntime-genai 0.18: ``JSON Error: Unknown value "_autotune"``), so that
fragment carries no evidence; the Foundry Local script that writes it into a folder does.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from autotune import Exporter, evidence_comment
from autotune.errors import one_line

from .foundry_local import render_foundry_local
from .params import onnxruntime_params
from .session import config_fragment, genai_overlay, genai_provider

if TYPE_CHECKING:
    from autotune import DeploymentProfile

USAGE_PROMPT = "Explain what a deployment profile is."
USAGE_TOKENS = 64


def render_genai_config(profile: DeploymentProfile) -> str:
    """The ``genai_config.json`` fragment (merge it into the artifact's file, or pass it to ``og.Config.overlay``)."""
    params = onnxruntime_params(profile.params)  # ProfileError names a bad parameter
    return json.dumps(config_fragment(params, profile.workload.context), indent=2) + "\n"


PYTHON_TEMPLATE = '''\
# onnxruntime-genai with the settings autotune measured ({label}).
import onnxruntime_genai as og

MODEL_DIR = {model_dir!r}
config = og.Config(MODEL_DIR)
config.clear_providers()
{provider_line}config.overlay({overlay!r})
model = og.Model(config)
tokenizer = og.Tokenizer(model)


def generate(prompt, max_new_tokens={tokens}):
    """Greedy reply to ``prompt`` (at most ``max_new_tokens`` tokens), printed as it comes and returned."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length={context})  # the context autotune measured
    generator = og.Generator(model, params)
    generator.append_tokens(tokenizer.encode(prompt))
    stream, pieces = tokenizer.create_stream(), []
    while not generator.is_done() and len(pieces) < max_new_tokens:
        generator.generate_next_token()
        pieces.append(stream.decode(generator.get_next_tokens()[0]))
        print(pieces[-1], end="", flush=True)
    print()
    return "".join(pieces)


if __name__ == "__main__":  # usage
    generate({prompt!r})
'''


def render_python(profile: DeploymentProfile) -> str:
    """A runnable Python snippet: load the artifact with the tuned settings, define ``generate``, answer one prompt."""
    params = onnxruntime_params(profile.params)  # ProfileError names a bad parameter
    provider = genai_provider(params)
    return evidence_comment(profile) + PYTHON_TEMPLATE.format(
        label=one_line(profile.artifact.label), model_dir=str(profile.artifact.path),
        provider_line=f"config.append_provider({provider!r})\n" if provider else "",
        overlay=json.dumps(genai_overlay(params)), context=profile.workload.context, tokens=USAGE_TOKENS,
        prompt=USAGE_PROMPT,
    )


EXPORTERS = (
    Exporter(name="genai-config", description="genai_config.json session options for onnxruntime-genai",
             render=render_genai_config, backends=("onnxruntime",)),
    Exporter(name="onnxruntime-python", description="Python snippet running the model with onnxruntime-genai",
             render=render_python, backends=("onnxruntime",)),
    Exporter(name="foundry-local", description="Python script preparing the tuned folder for Foundry Local and running it",
             render=render_foundry_local, backends=("onnxruntime",)),
)
