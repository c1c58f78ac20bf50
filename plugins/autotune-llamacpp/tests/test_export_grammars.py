"""The exports whose tools cannot run here, checked against those tools' own grammar: Ollama and vLLM.

Ollama's binary is not installable on the test machines and vLLM needs a GPU (or its CPU build), so:

- every Modelfile is read back by ``parse_modelfile``, a port of Ollama's ``parser.ParseFile`` state machine,
  and each PARAMETER is typed the way Ollama's ``api.FormatParams`` types it;
- every ``vllm serve`` command is split by the shell and each flag checked against vLLM's documented engine
  arguments and the type of value each takes.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any, get_args

import pytest

from autotune import DeploymentProfile
from autotune.errors import ProfileError
from autotune.testing.profiles import HOSTILE_TEXT, sample_profile
from autotune_llamacpp import EXPORTERS
from autotune_llamacpp.params import KvCacheType

# --- Ollama ----------------------------------------------------------------------------------------------------
# Source: github.com/ollama/ollama, parser/parser.go (ParseFile, parseRuneForState, unquote, isValidCommand,
# deprecatedParameters) at commit 00dc3af848b5ed632aef2c68c990a58fa83da2ec, and api/types.go (Options, Runner,
# FormatParams) of the same period; docs/modelfile.md for the instructions and the documented parameters.

OLLAMA_COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter",
                   "message", "requires"}
"""``isValidCommand``: the instructions, case-insensitive."""

OLLAMA_PARAMETER_TYPES: dict[str, str] = {
    # Options (predict time)
    "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int", "top_p": "float", "min_p": "float",
    "typical_p": "float", "repeat_last_n": "int", "temperature": "float", "repeat_penalty": "float",
    "presence_penalty": "float", "frequency_penalty": "float", "stop": "string",
    # Runner (load time)
    "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int", "use_mmap": "bool",
    "num_thread": "int",
}
"""The json tags of ``api.Options`` and its embedded ``api.Runner``, with the Go kind ``FormatParams`` parses
(``int``: ParseInt base 10; ``float``: ParseFloat 32-bit; ``bool``: ParseBool, also for ``*bool``; ``[]string``)."""

OLLAMA_DEPRECATED = {"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat",
                     "mirostat_tau", "mirostat_eta"}
"""``deprecatedParameters``: accepted with a warning and ignored, so an export must not rely on one (older
Ollama releases also had ``numa``, since removed: ``FormatParams`` now refuses it as an unknown parameter)."""


class ModelfileError(ValueError):
    """What Ollama's ``ParseFile`` or ``CreateRequest`` would refuse."""


def _go_is_print(ch: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols and the ASCII space.

    Python's ``str.isprintable`` draws the same line (it also refuses Z* separators other than the space).
    """
    return ch.isprintable()


def _unquote(value: str) -> tuple[str, bool]:
    """``unquote``: strip ``\"\"\"...\"\"\"`` or ``"..."``; False while a quote is still open."""
    if value[:3] == '"""':
        return (value[3:-3], True) if len(value) >= 6 and value[-3:] == '"""' else ("", False)
    if value[:1] == '"':
        return (value[1:-1], True) if len(value) >= 2 and value[-1] == '"' else ("", False)
    return value, True


def _next_state(ch: str, state: str) -> tuple[str, str | None]:
    """``parseRuneForState``: the next state and the rune to keep (None for Go's 0)."""
    space, newline = ch in " \t", ch in "\r\n"
    alpha = ch.isascii() and ch.isalpha()
    if state == "nil":
        return ("comment", None) if ch == "#" else ("nil", None) if space or newline else ("name", ch)
    if state == "name":
        if alpha:
            return "name", ch
        if space:
            return "value", None
        raise ModelfileError('command must be one of "from", "license", "template", ...')
    if state == "value":
        return ("nil", ch) if space or newline else ("value", ch)
    if state == "parameter":
        if alpha or (ch.isascii() and ch.isdigit()) or ch == "_":
            return "parameter", ch
        if space:
            return "value", None
        raise ModelfileError("unexpected EOF")
    if state == "message":
        if alpha:
            return "message", ch
        if space:
            return "value", None
        raise ModelfileError("unexpected EOF")
    assert state == "comment"
    return ("nil", None) if newline else ("comment", None)


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """``ParseFile``: the commands of a Modelfile as (name, argument); FROM is named ``model``, PARAMETER by its key."""
    commands: list[tuple[str, str]] = []
    state, name, role, buffer = "nil", "", "", ""
    for ch in text.removeprefix("\ufeff"):  # BOMOverride
        nxt, kept = _next_state(ch, state)
        if nxt != state:
            if state == "name":
                if buffer.lower() not in OLLAMA_COMMANDS:
                    raise ModelfileError(f"invalid command {buffer!r}")
                command = buffer.lower()
                if command == "parameter":
                    nxt = "parameter"
                elif command == "message":
                    nxt, name = "message", command
                else:
                    name = "model" if command == "from" else command
            elif state == "parameter":
                name = buffer
            elif state == "message":
                if buffer not in ("system", "user", "assistant"):
                    raise ModelfileError(f"invalid message role {buffer!r}")
                role = buffer
            elif state == "value":
                value, closed = _unquote(buffer.strip(" \t\r\n"))
                if not closed or ch in " \t":
                    buffer += ch  # a space, or a line break inside quotes, belongs to the value
                    continue
                commands.append((name, f"{role}: {value}" if role else value))
                role = ""
            buffer, state = "", nxt
        if kept is not None and _go_is_print(kept):
            buffer += kept  # Go drops every rune strconv.IsPrint rejects
    if state == "value":
        value, closed = _unquote(buffer.strip(" \t\r\n"))
        if not closed:
            raise ModelfileError("unexpected EOF: a quote is never closed")
        commands.append((name, f"{role}: {value}" if role else value))
    elif state not in ("nil", "comment"):
        raise ModelfileError("unexpected EOF")
    if not any(command == "model" for command, _ in commands):
        raise ModelfileError("no FROM line")
    return commands


def check_parameter(name: str, value: str) -> None:
    """``FormatParams`` for one PARAMETER: a known, live option whose value parses as its Go type."""
    if name in OLLAMA_DEPRECATED:
        raise ModelfileError(f"parameter {name} is deprecated: Ollama ignores it")
    kind = OLLAMA_PARAMETER_TYPES.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if kind == "int" and not (re.fullmatch(r"[+-]?[0-9]+", value) and -(2**63) <= int(value) < 2**63):
        raise ModelfileError(f"invalid int value {value!r} for {name}")
    if kind == "float":
        if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", value) or \
                not math.isfinite(float(value)) or abs(float(value)) > 3.4028234663852886e38:
            raise ModelfileError(f"invalid float value {value!r} for {name}")
    if kind == "bool" and value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
        raise ModelfileError(f"invalid bool value {value!r} for {name}")


def test_the_parser_follows_ollamas_grammar() -> None:
    """The port reads what Ollama's parser_test.go cases read, and refuses what they refuse."""
    text = ('# comment\nfrom "/a b/c.gguf"\nPARAMETER num_ctx 4096\nparameter stop "<|end|>"\n'
            'TEMPLATE """{{ .Prompt }}\n"""\nMESSAGE user hi there\nSYSTEM You are "x"\n')
    assert parse_modelfile(text) == [("model", "/a b/c.gguf"), ("num_ctx", "4096"), ("stop", "<|end|>"),
                                     ("template", "{{ .Prompt }}\n"), ("message", "user: hi there"),
                                     ("system", 'You are "x"')]
    assert parse_modelfile('FROM """it\'s "q"\tx"""') == [("model", "it's \"q\"\tx")]
    assert parse_modelfile("FROM /a\u00a0b\u200bc") == [("model", "/abc")]  # unprintable runes vanish
    for bad in ("PARAMETER num_ctx 1\n", "FROM\n", "FROM x\nBOGUS y\n", 'FROM "x\n', "MESSAGE bot hi\nFROM x\n"):
        with pytest.raises(ModelfileError):
            parse_modelfile(bad)
    check_parameter("use_mmap", "false")
    for name, value in (("num_ctx", "1.5"), ("top_p", "x"), ("use_mmap", "yes"), ("numa", "true"),
                        ("use_mlock", "true"), ("flash_attention", "1")):
        with pytest.raises(ModelfileError):
            check_parameter(name, value)


def _profile(path: str, **params: Any) -> DeploymentProfile:
    sample = sample_profile("llamacpp")
    return sample.model_copy(update={"artifact": sample.artifact.model_copy(update={"path": path}),
                                     "params": {**sample.params, **params}})


def _render(name: str, profile: DeploymentProfile) -> str:
    return next(e for e in EXPORTERS if e.name == name).render(profile)


MODELFILE_VARIANTS = [
    {"flash_attn": True, "type_kv": "q8_0", "use_mmap": True},
    {"flash_attn": False, "type_kv": "q4_0", "use_mmap": False, "n_threads": 1},
    {"flash_attn": False, "type_kv": "f16", "n_threads": None, "n_gpu_layers": 33},
]


@pytest.mark.parametrize("params", MODELFILE_VARIANTS, ids=["fa-q8_0", "nofa-q4_0-nommap", "f16-gpu"])
@pytest.mark.parametrize("path", ["/models/m.gguf", "/tmp/my models/it's a \"q\"; rm -rf ~ $(id).gguf",
                                  '"leading and trailing quotes"', " spaces around ", "#not a comment", "é/模型.gguf"])
def test_every_ollama_modelfile_parses_with_from_the_exact_path(path: str, params: dict[str, Any]) -> None:
    commands = parse_modelfile(_render("ollama", _profile(path, **params)))
    assert [value for command, value in commands if command == "model"] == [path]
    parameters = [(command, value) for command, value in commands if command != "model"]
    for name, value in parameters:
        check_parameter(name, value)
    assert {name for name, _ in parameters} == {"num_ctx", "num_thread", "num_batch", "num_gpu", "use_mmap"}


@pytest.mark.parametrize("path", HOSTILE_TEXT)
def test_a_modelfile_is_written_exactly_when_ollama_reads_the_path_back(path: str) -> None:
    """Refused (a ProfileError naming the Modelfile) only for paths Ollama's parser would change or cut."""
    try:
        text = _render("ollama", _profile(path))
    except ProfileError as error:
        assert "Modelfile" in str(error) and "\n" not in str(error)
        assert '"""' in path or not all(_go_is_print(ch) for ch in path)
        return
    assert [value for command, value in parse_modelfile(text) if command == "model"] == [path]


# --- vLLM ------------------------------------------------------------------------------------------------------
# Source: vLLM 0.8.5's engine arguments, https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html (the usage of
# `vllm serve`; the same flags are listed for 0.8.5 in Cloudera's "Supported vLLM command line arguments"), and
# https://docs.vllm.ai/en/latest/features/quantization/gguf.html for serving a local GGUF with --tokenizer.

VLLM_LOAD_FORMATS = {"auto", "pt", "safetensors", "npcache", "dummy", "tensorizer", "sharded_state", "gguf",
                     "bitsandbytes", "mistral", "runai_streamer", "runai_streamer_sharded", "fastsafetensors"}
VLLM_FLAGS: dict[str, Any] = {
    "--tokenizer": str, "--load-format": VLLM_LOAD_FORMATS, "--max-model-len": int, "--max-num-seqs": int,
    "--max-num-batched-tokens": int, "--dtype": {"auto", "half", "float16", "bfloat16", "float", "float32"},
    "--kv-cache-dtype": {"auto", "fp8", "fp8_e5m2", "fp8_e4m3"}, "--seed": int, "--enforce-eager": None,
}
"""The documented flags the export may use: the type of value each takes, its choices, or None (a switch)."""


@pytest.mark.parametrize("model_format", ["gguf", "hf"])
@pytest.mark.parametrize("type_kv", ["q8_0", "f16"])
def test_vllm_command_uses_only_documented_flags_with_values_of_their_type(model_format: str, type_kv: str) -> None:
    profile = _profile("/tmp/my models/it's a \"q\".gguf", type_kv=type_kv)
    profile = profile.model_copy(update={"model": profile.model.model_copy(
        update={"format": model_format, "path": "/src/My Model" if model_format == "hf" else "/src/m.gguf"})})
    text = _render("vllm", profile)
    assert "not run" in text and "experimental" in text and "VLLM_CPU_OMP_THREADS_BIND" in text
    argv = shlex.split(text, comments=True)
    assert argv[:3] == ["vllm", "serve", profile.artifact.path]
    rest = argv[3:]
    seen: dict[str, str | None] = {}
    while rest:
        flag = rest.pop(0)
        assert flag in VLLM_FLAGS, f"{flag} is not a documented vLLM 0.8.5 engine argument"
        kind = VLLM_FLAGS[flag]
        if kind is None:
            seen[flag] = None
            continue
        value = rest.pop(0)
        if kind is int:
            assert re.fullmatch(r"[0-9]+", value) and int(value) > 0, (flag, value)
        elif isinstance(kind, set):
            assert value in kind, (flag, value)
        seen[flag] = value
    assert seen["--max-model-len"] == str(profile.workload.context) and seen["--load-format"] == "gguf"
    assert seen.get("--tokenizer") == ("/src/My Model" if model_format == "hf" else None)
    if model_format == "gguf":
        assert "Add --tokenizer" in text


def test_every_kv_cache_type_renders_for_every_export() -> None:
    """No exporter lacks a KV-cache type the params accept (the snippet once named a missing GGML_TYPE_BF16)."""
    for type_kv in get_args(KvCacheType):
        for flash_attn in (True, False):
            for exporter in EXPORTERS:
                assert exporter.render(_profile("/m.gguf", type_kv=type_kv, flash_attn=flash_attn))
