"""Exporters for ``openvino`` profiles: the compile configuration as JSON, and two runnable Python scripts.

``openvino-python`` compiles the IR with ``openvino`` alone (the infer request autotune measured);
``openvino-genai`` runs it through openvino-genai's ``LLMPipeline`` with the same properties. The scripts start
with ``autotune.evidence_comment``; the JSON, which has no comments, carries the same lines under ``evidence``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from autotune import Exporter, decode_claim, evidence, evidence_comment
from autotune.errors import one_line

from .compile import compile_properties
from .convert import IR_FILE
from .genai import pipeline_arguments
from .params import openvino_params

if TYPE_CHECKING:
    from autotune import DeploymentProfile


def render_config(profile: DeploymentProfile) -> str:
    """``{"evidence", "model", "device", "properties"}``: what to pass to ``ov.Core().compile_model``, and why."""
    params = openvino_params(profile.params)  # ProfileError names a bad parameter
    config = {
        "evidence": evidence(profile),
        "model": f"{profile.artifact.path}/{IR_FILE}",
        "device": params.device,
        "properties": compile_properties(params),
    }
    return json.dumps(config, indent=2) + "\n"


PYTHON_TEMPLATE = '''\
"""{title}"""
import json
from pathlib import Path

import numpy as np
import openvino as ov
from tokenizers import Tokenizer

MODEL_DIR = Path({model_dir!r})
DEVICE = {device!r}
PROPERTIES = {properties!r}
# openvino_genai.LLMPipeline(str(MODEL_DIR), DEVICE, ATTENTION_BACKEND="SDPA", **PROPERTIES) runs the same IR.

compiled = ov.Core().compile_model(MODEL_DIR / {ir_file!r}, DEVICE, PROPERTIES)
request = compiled.create_infer_request()
tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
eos = json.loads((MODEL_DIR / "config.json").read_text()).get("eos_token_id")
eos = set(eos if isinstance(eos, list) else [eos])


def next_token(tokens, start):
    """Feed tokens at positions start..., return the greedy next token (the KV cache is internal state)."""
    count = len(tokens)
    request.infer({{"input_ids": np.array([tokens], dtype=np.int64),
                   "attention_mask": np.ones((1, start + count), dtype=np.int64),
                   "position_ids": np.arange(start, start + count, dtype=np.int64)[None],
                   "beam_idx": np.zeros(1, dtype=np.int32)}})
    return int(request.get_tensor("logits").data[0, -1].argmax())


def generate(prompt, max_new_tokens=64):
    ids = tokenizer.encode(prompt).ids
    request.reset_state()
    token, out = next_token(ids, 0), []
    while token not in eos and len(out) < max_new_tokens:
        out.append(token)
        token = next_token([token], len(ids) + len(out) - 1)
    return tokenizer.decode(out)


if __name__ == "__main__":
    print(generate("The capital of France is"))
'''


def render_python(profile: DeploymentProfile) -> str:
    """A self-contained script compiling the tuned IR with the tuned properties and generating greedily."""
    params = openvino_params(profile.params)  # ProfileError names a bad parameter
    title = one_line(f"Run {profile.model.path} with OpenVINO as tuned by autotune "
                     f"({profile.artifact.label}, decode {decode_claim(profile)}).")
    # The title is a docstring: its backslashes must stay text (\N would not compile) and it must not close early.
    return evidence_comment(profile) + PYTHON_TEMPLATE.format(
        title=title.replace("\\", "\\\\").replace('"""', "'''"), model_dir=str(profile.artifact.path),
        device=params.device, properties=compile_properties(params), ir_file=IR_FILE,
    )


GENAI_TEMPLATE = '''\
# openvino-genai's LLMPipeline on the IR autotune tuned ({label}), with the measured device and properties.
import openvino_genai

MODEL_DIR = {model_dir!r}
DEVICE = {device!r}
PROPERTIES = {properties!r}  # ATTENTION_BACKEND SDPA: the stateful KV cache autotune measured

pipeline = openvino_genai.LLMPipeline(MODEL_DIR, DEVICE, **PROPERTIES)


def generate(prompt, max_new_tokens={tokens}):
    """Greedy reply to ``prompt`` (at most ``max_new_tokens`` tokens), printed as it comes and returned."""
    config = pipeline.get_generation_config()  # the model's own (its EOS token, ...)
    config.max_new_tokens = max_new_tokens
    config.do_sample = False  # greedy, as autotune measured

    def stream(text):
        print(text, end="", flush=True)
        return openvino_genai.StreamingStatus.RUNNING

    reply = pipeline.generate(prompt, config, stream)
    print()
    return str(reply)


if __name__ == "__main__":  # usage
    generate({prompt!r})
'''
USAGE_PROMPT = "The capital of France is"
USAGE_TOKENS = 64


def render_genai(profile: DeploymentProfile) -> str:
    """A script running the tuned IR through ``openvino_genai.LLMPipeline``: defines ``generate``, answers one prompt."""
    device, properties = pipeline_arguments(profile.params)  # ProfileError names a bad parameter
    return evidence_comment(profile) + GENAI_TEMPLATE.format(
        label=one_line(profile.artifact.label), model_dir=str(profile.artifact.path), device=device,
        properties=properties, tokens=USAGE_TOKENS, prompt=USAGE_PROMPT)


EXPORTERS = (
    Exporter(name="openvino-config", description="OpenVINO compile_model device and properties (JSON)",
             render=render_config, backends=("openvino",)),
    Exporter(name="openvino-python", description="Python script compiling and running the tuned OpenVINO IR",
             render=render_python, backends=("openvino",)),
    Exporter(name="openvino-genai", description="Python script running the tuned IR with openvino-genai's LLMPipeline",
             render=render_genai, backends=("openvino",)),
)
