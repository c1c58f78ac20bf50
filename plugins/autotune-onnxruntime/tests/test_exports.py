"""Each onnxruntime export used as a user would, on a real profile of the tiny model's int4 build.

The Python snippet runs in a subprocess and must answer as ``autotune.load`` does; the genai_config.json
fragment runs in onnxruntime-genai; the Foundry Local script writes a folder that is checked against Foundry
Local's documented fields and runs in onnxruntime-genai as it is, and runs in Foundry Local itself where a
Python with foundry-local-sdk is named (``AUTOTUNE_FOUNDRY_PYTHON``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autotune import DeploymentProfile, evidence_comment
from autotune.testing.exports import PROMPT, snippet_generates
from autotune.testing.profiles import HOSTILE_TEXT, sample_profile
from autotune_onnxruntime import OnnxRuntimeBackend
from autotune_onnxruntime.exporters import render_genai_config, render_python
from autotune_onnxruntime.foundry_local import PASSTHROUGH_TEMPLATE, PUBLISHER, model_name, render_foundry_local

og = pytest.importorskip("onnxruntime_genai")


FOUNDRY_LOCAL_GRAMMAR = {
    "inference_model.json": ("Name", "PromptTemplate", "{Content}"),
    "cli": ("foundry cache cd <path>", "foundry model run <model>"),
    "sdk": ("register_model(model_path, model_id, metadata)", "<name>:<version>", "task=chat-completion",
            "genai_config.json"),
}
"""What the Foundry Local export relies on, as documented:

- inference_model.json: microsoft/Foundry-Local docs/how-to/compile-models-for-foundry-local.md ("Create chat
  template file"): a JSON object with the model's ``Name`` and a ``PromptTemplate`` object whose ``assistant``
  and ``prompt`` strings carry the ``{Content}`` placeholder; the folder goes under the cache as
  ``<publisher>/<model>/`` and runs by that Name.
- CLI: microsoft/Foundry-Local docs/reference/reference-cli.md: ``foundry cache cd <path>`` changes the cache
  directory, ``foundry model run <model>`` runs a model; cli/RELEASE-NOTES-0.10.0.md renames it ``foundry run``.
- SDK: the foundry-local-sdk 2.2.1 README (PyPI), "Bring your own model": ``register_model`` on the LOCAL catalog
  takes a directory containing ``genai_config.json``, an id in ``<name>:<version>`` form and metadata whose
  ``task`` is ``chat-completion``; the folder's ``genai_config.json`` selects the provider.
"""


def _run_script(script: Path, *args: str, python: str = sys.executable, hide_sdk: bool = False,
                home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as ``__main__``; ``hide_sdk``: as where foundry-local-sdk is not installed."""
    hide = "import sys; sys.modules['foundry_local_sdk'] = None; " if hide_sdk else ""
    code = f"{hide}import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    env = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run([python, "-c", code, str(script), *args], capture_output=True, text=True, timeout=180,
                          env=env, check=False)


def test_python_export_starts_with_its_evidence_and_answers_as_autotune_load(int4_profile: DeploymentProfile,
                                                                            tmp_path: Path) -> None:
    text = render_python(int4_profile)
    assert text.startswith(evidence_comment(int4_profile))
    script = tmp_path / "snippet.py"
    script.write_text(text)
    exported = snippet_generates(script)  # as pasted (its usage line answers), then its generate()
    assert exported and exported == OnnxRuntimeBackend().load_profile(int4_profile).generate(PROMPT, 8)


def test_genai_config_export_runs_in_onnxruntime_genai(int4_profile: DeploymentProfile) -> None:
    fragment = render_genai_config(int4_profile)
    assert json.loads(fragment)["model"]["decoder"]["session_options"]["intra_op_num_threads"] == 2
    config = og.Config(int4_profile.artifact.path)
    config.overlay(fragment)  # what its description says to do with it
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=int4_profile.workload.context)
    generator = og.Generator(model, params)
    generator.append_tokens(og.Tokenizer(model).encode(PROMPT))
    for _ in range(4):
        generator.generate_next_token()
    assert generator.get_sequence(0).shape[0] > len(og.Tokenizer(model).encode(PROMPT))


def test_foundry_local_export_writes_what_foundry_local_documents(int4_profile: DeploymentProfile,
                                                                  tmp_path: Path) -> None:
    text = render_foundry_local(int4_profile)
    assert text.startswith(evidence_comment(int4_profile))
    assert "What does not:" in text and "the CLI was not run" in text
    source = Path(int4_profile.artifact.path)
    source_files = {p.name: p.read_bytes() for p in source.iterdir() if p.suffix == ".json"}
    script = tmp_path / "foundry_local.py"
    script.write_text(text)
    models = tmp_path / "models dir"
    done = _run_script(script, str(models), hide_sdk=True)
    assert done.returncode == 0, done.stderr[-2000:]

    name = model_name(int4_profile)
    folder = models / PUBLISHER / name
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name) and 'MODEL_ID = NAME + ":1"' in text
    lines = done.stdout.splitlines()
    assert lines[0] == f"wrote {folder}"
    assert f"  foundry cache cd '{models}'" in lines and any(line.startswith(f"  foundry model run {name} ")
                                                            for line in lines)
    inference_model = json.loads((folder / "inference_model.json").read_text())
    assert set(inference_model) == {"Name", "PromptTemplate"} and inference_model["Name"] == name == folder.name
    assert set(inference_model["PromptTemplate"]) == {"assistant", "prompt"}
    assert all("{Content}" in value for value in inference_model["PromptTemplate"].values())
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == PASSTHROUGH_TEMPLATE

    config = json.loads((folder / "genai_config.json").read_text())
    original = json.loads(source_files["genai_config.json"])
    assert config["model"]["decoder"]["session_options"] == {
        **original["model"]["decoder"]["session_options"], "intra_op_num_threads": 2, "inter_op_num_threads": 1,
        "graph_optimization_level": "ORT_ENABLE_ALL", "session.intra_op.allow_spinning": "0", "provider_options": []}
    assert config["search"] == {**original["search"], "max_length": 64}
    assert config["model"]["decoder"]["filename"] == original["model"]["decoder"]["filename"]
    # Hard links share the weights; the files written were replaced, never written through.
    assert {p.name: p.read_bytes() for p in source.iterdir() if p.suffix == ".json"} == source_files

    # The folder runs as it is in onnxruntime-genai 0.18 (the version foundry-local-sdk 2.2.1 runs on).
    model = og.Model(og.Config(str(folder)))
    generator = og.Generator(model, og.GeneratorParams(model))
    generator.append_tokens(og.Tokenizer(model).encode(PROMPT))
    for _ in range(4):
        generator.generate_next_token()
    assert generator.get_sequence(0).shape[0] == len(og.Tokenizer(model).encode(PROMPT)) + 4


def test_foundry_local_export_renders_a_chat_template_around_content(int4_profile: DeploymentProfile,
                                                                     tmp_path: Path) -> None:
    pytest.importorskip("jinja2")
    script = tmp_path / "foundry_local.py"
    script.write_text(render_foundry_local(int4_profile))
    template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    driver = ("import json, runpy, sys; s = runpy.run_path(sys.argv[1]); "
              "print(json.dumps(s['prompt_template'](sys.argv[2], {'bos_token': {'content': '<s>'}})))")
    done = subprocess.run([sys.executable, "-c", driver, str(script), template], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"assistant": "{Content}", "prompt": "<s><|user|>\n{Content}<|end|>\n<|assistant|>\n"}


@pytest.mark.parametrize("path", HOSTILE_TEXT)
def test_foundry_local_export_names_any_model_safely(path: str) -> None:
    profile = sample_profile("onnxruntime")
    profile = profile.model_copy(update={"model": profile.model.model_copy(update={"path": path})})
    assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", model_name(profile))
    compile(render_foundry_local(profile), "foundry_local.py", "exec")


def test_foundry_local_export_answers_in_foundry_local(int4_profile: DeploymentProfile, tmp_path: Path) -> None:
    python = os.environ.get("AUTOTUNE_FOUNDRY_PYTHON")
    if not python:
        pytest.skip("set AUTOTUNE_FOUNDRY_PYTHON to a Python with foundry-local-sdk installed (it pins onnxruntime "
                    "1.31.0, so it lives in a venv of its own) to run the export in Foundry Local")
    script = tmp_path / "foundry_local.py"
    script.write_text(render_foundry_local(int4_profile))
    done = _run_script(script, str(tmp_path / "models"), python=python, home=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wrote ") and "".join(lines[1:]).strip()  # Foundry Local's reply: tokens
