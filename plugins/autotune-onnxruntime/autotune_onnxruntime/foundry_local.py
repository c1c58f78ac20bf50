"""The ``foundry-local`` export: a Python script that readies the tuned ONNX Runtime GenAI folder for Foundry Local.

Foundry Local runs ONNX Runtime GenAI model folders and reads each folder's ``genai_config.json``, so the
tuned settings travel in that file; nothing in Foundry Local's own settings sets threads or session options.
The script copies the artifact (hard links where it can) into ``MODELS_DIR/autotune/<name>/``, writes:

- ``genai_config.json``: the artifact's, with ``session.config_fragment`` merged in (session options,
  provider, the measured context as ``search.max_length``);
- ``inference_model.json``: ``Name`` and ``PromptTemplate`` (the chat template rendered around Foundry
  Local's ``{Content}`` placeholder), what the service-based CLI's ``foundry cache cd`` /
  ``foundry model run <Name>`` need;
- ``tokenizer_config.json`` with a ``chat_template``: the in-process runtime (``foundry-local-sdk`` 2.x)
  refuses a chat without one (measured with 2.2.1: ``Empty chat template``); a model without a template
  gets one passing the text through, so it completes raw text as it was measured;

then registers the folder in Foundry Local's local catalog and answers one prompt when ``foundry-local-sdk``
is installed, or prints the CLI commands. The header lists what maps and what does not.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING

from autotune import evidence_comment
from autotune.errors import one_line

from .params import onnxruntime_params
from .session import config_fragment, genai_provider

if TYPE_CHECKING:
    from autotune import DeploymentProfile

PUBLISHER = "autotune"
"""The folder level above the model: the documented custom-model layout is ``<cache>/<publisher>/<model>/``."""
PASSTHROUGH_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
"""The chat template given to a model that has none: the user's text as it is, what autotune measured."""
USAGE_PROMPT = "Explain what a deployment profile is."
USAGE_TOKENS = 64


def model_name(profile: DeploymentProfile) -> str:
    """Foundry Local's name for the tuned model: the source's name and precision, lower case, ``[a-z0-9.-]`` only.

    It names the folder, ``inference_model.json``'s ``Name`` and the registered id (``<name>:1``, where a colon
    separates the version), so nothing else may appear in it.
    """
    source = PurePath(profile.model.path).name.removesuffix(".gguf")
    name = re.sub(r"[^a-z0-9.]+", "-", f"{source}-{profile.artifact.precision}".lower()).strip("-.")
    return name[:64].strip("-.") or "autotune-model"


HEADER = """\
# Foundry Local serving the ONNX Runtime GenAI folder autotune tuned ({label}).
#
# What maps: Foundry Local runs the folder with onnxruntime-genai and reads its genai_config.json, so
#   intra_op_num_threads, graph_optimization_level, allow_spinning -> model.decoder.session_options
#   execution_provider ({provider}) -> model.decoder.session_options.provider_options
#   the measured context ({context} tokens) -> search.max_length
# What does not:
#   - the figures above are onnxruntime-genai's own decode loop; Foundry Local adds its chat template,
#     its request path and its own onnxruntime build (foundry-local-sdk 2.2.1 pins onnxruntime 1.31.0 and
#     onnxruntime-genai 0.18.0): measure there before relying on them
#   - max tokens and temperature are per request in Foundry Local (MAX_TOKENS and 0.0 below), not settings;
#     `foundry service set` has no thread or session setting: the folder's genai_config.json is the place
#   - a device provider other than the CPU must be registered in Foundry Local first
#     (FoundryLocalManager.download_and_register_eps()); the CLI picks devices its own way
#   - a model without a chat template gets a pass-through one (raw completion, as measured)
#   - the CLI commands printed are the service-based CLI's (`foundry cache cd`, `foundry model run`); CLI 0.10
#     renamed `model run` to `run`, and whether it still reads a folder through `cache cd` was not checked
# Checked by autotune's tests: the folder runs in onnxruntime-genai 0.18 and its files follow Foundry Local's
# documented fields; the SDK run below runs only where foundry-local-sdk is installed; the CLI was not run.
#
# Usage:  python this_script.py [MODELS_DIR]        (MODELS_DIR defaults to ./foundry-models)
#   writes MODELS_DIR/{publisher}/{name}/, then answers one prompt with foundry-local-sdk when it is
#   installed (pip install foundry-local-sdk), or prints the Foundry Local CLI commands that serve it.
"""

SCRIPT = '''\
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

SOURCE_DIR = Path({source!r})
NAME = {name!r}
MODEL_ID = NAME + ":1"  # Foundry Local ids are <name>:<version>
SETTINGS = {settings!r}
PASSTHROUGH_TEMPLATE = {passthrough!r}
PROMPT = {prompt!r}
MAX_TOKENS = {tokens}


def merge(base, fragment):
    """``fragment`` merged into ``base`` (nested objects key by key), in place."""
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def write_json(path, data):
    path.unlink(missing_ok=True)  # a hard link to the source: replace it, never write through it
    path.write_text(json.dumps(data, indent=2) + "\\n", encoding="utf-8")


def link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def token_text(value):
    """A special token as tokenizer_config.json writes it (a string, or an object with its content)."""
    value = value.get("content") if isinstance(value, dict) else value
    return value if isinstance(value, str) else ""


def prompt_template(template, tokenizer_config):
    """inference_model.json's PromptTemplate: the chat template rendered around Foundry Local's {{Content}}."""
    if template == PASSTHROUGH_TEMPLATE:
        return {{"assistant": "{{Content}}", "prompt": "{{Content}}"}}
    try:
        import jinja2

        prompt = jinja2.Environment().from_string(template).render(
            messages=[{{"role": "user", "content": "{{Content}}"}}], add_generation_prompt=True,
            bos_token=token_text(tokenizer_config.get("bos_token")),
            eos_token=token_text(tokenizer_config.get("eos_token")))
    except Exception as error:  # no jinja2, or a template that needs transformers' own extensions
        print(f"chat template not rendered ({{error!r}}); PromptTemplate passes the prompt through", file=sys.stderr)
        return {{"assistant": "{{Content}}", "prompt": "{{Content}}"}}
    return {{"assistant": "{{Content}}", "prompt": prompt}}


def prepare(models_dir):
    """Write MODELS_DIR/{publisher}/NAME: the tuned folder Foundry Local loads; return its path."""
    folder = Path(models_dir) / {publisher!r} / NAME
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(SOURCE_DIR, folder, copy_function=link_or_copy)
    genai_config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
    write_json(folder / "genai_config.json", merge(genai_config, SETTINGS))
    tokenizer_file = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_file.read_text(encoding="utf-8")) if tokenizer_file.is_file() else {{}}
    template = tokenizer_config.get("chat_template")
    jinja_file = folder / "chat_template.jinja"  # where transformers 5 keeps it
    if not isinstance(template, str) or not template:
        template = jinja_file.read_text(encoding="utf-8") if jinja_file.is_file() else PASSTHROUGH_TEMPLATE
    write_json(tokenizer_file, {{**tokenizer_config, "chat_template": template}})
    write_json(folder / "inference_model.json",
               {{"Name": NAME, "PromptTemplate": prompt_template(template, tokenizer_config)}})
    return folder


def answer(folder, models_dir):
    """Register ``folder`` in Foundry Local's local catalog, load it and answer PROMPT greedily."""
    from foundry_local_sdk import (
        CatalogType, ChatSession, Configuration, FoundryLocalManager, MessageItem, ModelInfoBuilder, Request,
        RequestOptions, SearchOptions,
    )

    # Foundry Local's registrations, cache and logs stay beside the models, not in the user's profile.
    FoundryLocalManager.initialize(Configuration(app_name="autotune", app_data_dir=str(Path(models_dir) / ".foundry")))
    catalog = FoundryLocalManager.instance.get_catalog(CatalogType.LOCAL)
    if catalog.get_model_variant(MODEL_ID) is not None:
        catalog.unregister_model(MODEL_ID)  # registered by an earlier run, maybe for another folder
    with ModelInfoBuilder() as metadata:
        metadata.set_string_property("task", "chat-completion")
        model = catalog.register_model(model_path=str(folder), model_id=MODEL_ID, metadata=metadata)
    model.load()
    try:
        with ChatSession(model) as session:
            session.set_options(RequestOptions(search=SearchOptions(temperature=0.0, max_output_tokens=MAX_TOKENS)))
            with Request().add_item(MessageItem.user(PROMPT)) as request, session.process_request(request) as reply:
                return "".join(item.get_simple_text() for item in reply if isinstance(item, MessageItem))
    finally:
        model.unload()


if __name__ == "__main__":  # usage
    models_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "foundry-models").absolute()
    folder = prepare(models_dir)
    print(f"wrote {{folder}}")
    try:
        import foundry_local_sdk  # noqa: F401
    except ImportError:
        print("foundry-local-sdk is not installed here; serve the folder with the Foundry Local CLI:")
        print(f"  foundry cache cd {{shlex.quote(str(models_dir))}}")
        print(f"  foundry model run {{NAME}}    # CLI 0.10 and later: foundry run {{NAME}}")
    else:
        print(answer(folder, models_dir))
'''


def render_foundry_local(profile: DeploymentProfile) -> str:
    """The script readying ``profile``'s ORT GenAI folder for Foundry Local, headed by its evidence and mapping."""
    params = onnxruntime_params(profile.params)  # ProfileError names a bad parameter
    name = model_name(profile)
    header = HEADER.format(label=one_line(profile.artifact.label), provider=genai_provider(params) or "cpu: none",
                           context=profile.workload.context, publisher=PUBLISHER, name=name)
    script = SCRIPT.format(source=str(profile.artifact.path), name=name, publisher=PUBLISHER,
                           settings=config_fragment(params, profile.workload.context),
                           passthrough=PASSTHROUGH_TEMPLATE, prompt=USAGE_PROMPT, tokens=USAGE_TOKENS)
    return evidence_comment(profile) + header + "\n" + script
