"""The OpenVINO exports used as a user would, on a real profile of the tiny model's int8 build.

The openvino-genai script runs in a subprocess and must answer as ``autotune.load`` does; the compile
configuration compiles and decodes a token. (The plain-openvino script runs in ``test_openvino_backend``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autotune import DeploymentProfile, evidence, evidence_comment
from autotune.testing.exports import PROMPT, snippet_generates
from autotune_openvino import OpenVINOBackend, render_config, render_genai
from autotune_openvino.decoder import Decoder
from autotune_openvino.tokens import load_tokenizer

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")



def test_genai_export_starts_with_its_evidence_and_answers_as_autotune_load(int8_profile: DeploymentProfile,
                                                                           tmp_path: Path) -> None:
    genai = pytest.importorskip("openvino_genai", reason="openvino-genai is not installed: pip install "
                                "'slm-autotune-openvino[genai]'")
    text = render_genai(int8_profile)
    assert text.startswith(evidence_comment(int8_profile))
    assert "'INFERENCE_NUM_THREADS': 2" in text and "'KV_CACHE_PRECISION': 'u8'" in text
    script = tmp_path / "snippet.py"
    script.write_text(text)
    exported = snippet_generates(script)  # as pasted (its usage line answers), then its generate()
    pipeline = OpenVINOBackend().load_profile(int8_profile)
    config = pipeline.get_generation_config()
    config.max_new_tokens, config.do_sample = 8, False
    assert isinstance(pipeline, genai.LLMPipeline) and exported and exported == str(pipeline.generate(PROMPT, config))


def test_config_export_compiles_and_decodes(int8_profile: DeploymentProfile) -> None:
    config = json.loads(render_config(int8_profile))
    assert config["evidence"] == evidence(int8_profile)
    compiled = ov.Core().compile_model(config["model"], config["device"], config["properties"])
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 2
    decoder = Decoder(compiled)
    decoder.reset()
    prompt = list(load_tokenizer(Path(int8_profile.artifact.path)).encode(PROMPT).ids)
    vocab = json.loads((Path(int8_profile.artifact.path) / "config.json").read_text())["vocab_size"]
    token = int(np.asarray(decoder.feed(prompt, 0))[-1].argmax())  # a prefill, then a decode step
    following = int(np.asarray(decoder.feed([token], len(prompt)))[-1].argmax())
    assert 0 <= token < vocab and 0 <= following < vocab
