"""Exporters for ``onnxruntime`` profiles: the genai_config.json settings, and a Python snippet running them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from autotune import Exporter
from autotune.errors import one_line

from .params import OnnxRuntimeParams, onnxruntime_params
from .session import genai_overlay, genai_provider

if TYPE_CHECKING:
    from autotune import DeploymentProfile


def config_fragment(params: OnnxRuntimeParams, context: int) -> dict[str, Any]:
    """What to merge into the model's ``genai_config.json``: session options, provider and context."""
    fragment = genai_overlay(params)
    provider = genai_provider(params)
    fragment["model"]["decoder"]["session_options"]["provider_options"] = [{provider: {}}] if provider else []
    fragment["search"] = {"max_length": context}
    return fragment


def render_genai_config(profile: DeploymentProfile) -> str:
    """The ``genai_config.json`` fragment (merge it into the artifact's file, or pass it to ``og.Config.overlay``)."""
    params = onnxruntime_params(profile.params)  # ProfileError names a bad parameter
    return json.dumps(config_fragment(params, profile.workload.context), indent=2) + "\n"


def render_python(profile: DeploymentProfile) -> str:
    """A runnable Python snippet: load the artifact with the tuned settings and stream a reply."""
    params = onnxruntime_params(profile.params)  # ProfileError names a bad parameter
    provider = genai_provider(params)
    overlay = json.dumps(genai_overlay(params))
    provider_line = f"config.append_provider({provider!r})\n" if provider else ""
    return (
        f"# onnxruntime-genai with the settings autotune measured ({one_line(profile.artifact.label)}, "
        f"{profile.measured.decode_tps:.1f} tok/s, p95 ITL {profile.measured.itl_p95_ms:.1f} ms)\n"
        "import onnxruntime_genai as og\n"
        "\n"
        f"MODEL_DIR = {profile.artifact.path!r}\n"
        "config = og.Config(MODEL_DIR)\n"
        "config.clear_providers()\n"
        f"{provider_line}"
        f"config.overlay({overlay!r})\n"
        "model = og.Model(config)\n"
        "tokenizer = og.Tokenizer(model)\n"
        "params = og.GeneratorParams(model)\n"
        f"params.set_search_options(max_length={profile.workload.context})\n"
        "generator = og.Generator(model, params)\n"
        "generator.append_tokens(tokenizer.encode(\"Explain what a deployment profile is.\"))\n"
        "stream = tokenizer.create_stream()\n"
        "while not generator.is_done():\n"
        "    generator.generate_next_token()\n"
        "    print(stream.decode(generator.get_next_tokens()[0]), end=\"\", flush=True)\n"
        "print()\n"
    )


EXPORTERS = (
    Exporter(name="genai-config", description="genai_config.json session options for onnxruntime-genai",
             render=render_genai_config, backends=("onnxruntime",)),
    Exporter(name="onnxruntime-python", description="Python snippet running the model with onnxruntime-genai",
             render=render_python, backends=("onnxruntime",)),
)
