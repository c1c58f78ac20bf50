"""Render a llama.cpp deployment profile for the tools people run: llama-server, Ollama, llama-cpp-python (a
snippet and its OpenAI-compatible server) and vLLM.

A ``llamacpp-server`` profile was measured through llama-server itself: its ``llama-server`` export is the
measured command, built by ``server_args.server_argv`` as the measurement built it, and ``autotune verify`` starts
that same command (``Exporter.command``). What follows is about in-process (``llamacpp``) profiles.

Every render reproduces the measured configuration: the same context, threads (generation and
batch), batch sizes, flash attention, KV-cache types (K only when flash attention is off — see
``runtime_params.kv_cache_types``), mmap and GPU layers; the vLLM command maps what it can and says what it
cannot. Paths are quoted so the text is safe to paste: ``shlex`` quoting for the shell, Modelfile string quoting
for Ollama, ``repr`` for Python. Each text starts with ``autotune.evidence_comment``: ``#`` lines naming the
profile and the figures measured with it.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from autotune import Exporter, evidence_comment
from autotune.errors import ProfileError, one_line

from .params import llamacpp_params
from .runtime_params import effective, ggml_type_id
from .server_args import BACKEND_NAME, server_argv, server_params

if TYPE_CHECKING:
    from autotune import DeploymentProfile

BACKENDS = ("llamacpp",)
SERVER_BACKENDS = (BACKEND_NAME,)
"""Backends measured through llama-server itself: their export is the measured command."""
EXPORT_PORT = 8080
"""The port an exported server command listens on (llama-server's own default); the measurement used a free one."""
BINARY_KEY = "llama_server"
"""Where a ``llamacpp-server`` measurement records the llama-server it started (``Measurement.context``)."""


def _settings(profile: DeploymentProfile) -> dict[str, Any]:
    """The measured settings, from the validated parameters (``ProfileError`` names a bad one)."""
    return effective(llamacpp_params(profile.params), profile.workload.context)


def _has_sliding_window(profile: DeploymentProfile) -> bool:
    return bool(profile.artifact.details.get("sliding_window"))


def measured_binary(profile: DeploymentProfile) -> str:
    """The llama-server a ``llamacpp-server`` profile was measured with (``llama-server`` on the PATH when the
    profile does not say)."""
    binary = profile.measured.context.get(BINARY_KEY)
    return binary if isinstance(binary, str) and binary else "llama-server"


def served_command(profile: DeploymentProfile, port: int) -> list[str] | None:
    """The command a ``llamacpp-server`` profile was measured with, listening on 127.0.0.1:``port``: the same
    binary, model file and flags (``server_argv``, the one place they are built), ``-np`` as measured. None for a
    profile measured in-process, whose llama-server export is a translation rather than what was measured."""
    if profile.backend.name not in SERVER_BACKENDS:
        return None
    return server_argv(measured_binary(profile), profile.artifact.path, server_params(profile.params),
                       profile.workload, port)


def render_llama_server(profile: DeploymentProfile) -> str:
    """A ``llama-server`` command line: the measured command for a ``llamacpp-server`` profile; for an in-process
    profile, the server with the settings llama-cpp-python was measured with.

    Flag spellings are that build's (common/arg.cpp; the tests start the export with a server built from it):
    ``--load-mode mmap|none`` replaced ``--no-mmap``, which it rejects, and ``-fa`` takes a value.
    """
    command = served_command(profile, EXPORT_PORT)
    if command is not None:
        note = (f"# The command autotune measured (same binary, flags and slots); only the port differs, {EXPORT_PORT} "
                "here. It listens on loopback as measured: give --host 0.0.0.0 to serve other machines.\n"
                "# `autotune verify PROFILE` starts it and checks that the figures above still hold.\n")
        return evidence_comment(profile) + note + shlex.join(command) + "\n"
    s = _settings(profile)
    argv = [
        "llama-server", "-m", profile.artifact.path,
        "-c", str(s["n_ctx"]),
        "-t", str(s["n_threads"]), "-tb", str(s["n_threads"]),
        "-b", str(s["n_batch"]), "-ub", str(s["n_ubatch"]),
        "-fa", "on" if s["flash_attn"] else "off",
        "-ctk", s["type_k"], "-ctv", s["type_v"],
        # llama-server's default is 'auto' (offload when a GPU exists); state what was measured.
        "-ngl", str(s["n_gpu_layers"]),
        # llama-cpp-python's use_mmap: mmap when True, plain reads when False (its Llama.__init__).
        "--load-mode", "mmap" if s["use_mmap"] else "none",
        # One sequence and no prompt cache, as measured: by default the server splits the context over 4 slots
        # and keeps up to 8 GiB of old prompts in RAM, beyond the memory autotune measured.
        "-np", "1", "--cache-ram", "0",
    ]
    if _has_sliding_window(profile):
        # llama-cpp-python keeps llama.cpp's full-size sliding-window cache; llama-server defaults to the small one.
        argv.append("--swa-full")
    note = ("# -np 1 --cache-ram 0: one sequence and no prompt cache in RAM, as measured (llama-server's defaults "
            "are 4 slots and up to 8 GiB of cached prompts).\n")
    return evidence_comment(profile) + note + shlex.join(argv) + "\n"


def _modelfile_string(value: str) -> str:
    """Quote a value the way Ollama's Modelfile parser reads it back (``"..."`` or ``\"\"\"...\"\"\"``).

    Its parser (parser/parser.go) ends a quoted value at the first ``\"\"\"`` and silently drops every rune
    Go's ``strconv.IsPrint`` rejects (controls, but also no-break and zero-width spaces, line separators, bidi
    marks), so such a path would name another file; Python's ``str.isprintable`` draws the same line.
    """
    if '"""' in value or not value.isprintable():
        raise ProfileError(
            f"the path {value!r} cannot be written in an Ollama Modelfile (it contains '\"\"\"' or an "
            "unprintable character, which Ollama's parser drops); move the model to a plainer path and export again"
        )
    return f'"""{value}"""' if '"' in value else f'"{value}"'


def render_ollama(profile: DeploymentProfile) -> str:
    """An Ollama Modelfile: ``FROM`` the artifact plus the runner parameters Ollama accepts."""
    s = _settings(profile)
    lines = [f"# Ollama Modelfile from an autotune profile (llama.cpp, {one_line(profile.artifact.label)})."]
    quantized_kv = s["type_k"] != "f16" or s["type_v"] != "f16"
    if s["flash_attn"] or quantized_kv:
        # Flash attention and the KV-cache type are server-wide settings in Ollama, not Modelfile parameters.
        # A command to paste, with flash attention said either way (Ollama may turn it on by itself).
        env = [f"OLLAMA_FLASH_ATTENTION={1 if s['flash_attn'] else 0}"]
        if s["flash_attn"] and quantized_kv:
            env.append(f"OLLAMA_KV_CACHE_TYPE={s['type_k']}")
        lines.append(f"# Start the server with the measured settings: {' '.join(env)} ollama serve")
        if quantized_kv and not s["flash_attn"]:
            lines.append(f"# The measured cache was K={s['type_k']}, V=f16 (flash attention off); Ollama quantizes "
                         "K and V together and only with flash attention, so it runs with an f16 cache here.")
    lines += [
        f"FROM {_modelfile_string(profile.artifact.path)}",
        f"PARAMETER num_ctx {s['n_ctx']}",
        f"PARAMETER num_thread {s['n_threads']}",
        f"PARAMETER num_batch {s['n_batch']}",
        f"PARAMETER num_gpu {s['n_gpu_layers']}",
        f"PARAMETER use_mmap {'true' if s['use_mmap'] else 'false'}",
    ]
    return evidence_comment(profile) + "\n".join(lines) + "\n"


def render_llama_cpp_python(profile: DeploymentProfile) -> str:
    """A Python snippet constructing ``llama_cpp.Llama`` with the measured settings."""
    s = _settings(profile)
    arguments = [
        ("model_path", repr(profile.artifact.path), ""),
        ("n_ctx", repr(s["n_ctx"]), ""),
        ("n_threads", repr(s["n_threads"]), ""),
        ("n_threads_batch", repr(s["n_threads"]), ""),
        ("n_batch", repr(s["n_batch"]), ""),
        ("n_ubatch", repr(s["n_ubatch"]), ""),
        ("flash_attn", repr(s["flash_attn"]), ""),
        # ggml type ids with their names: llama-cpp-python 0.3.36 has no GGML_TYPE_BF16 constant to name.
        ("type_k", repr(ggml_type_id(s["type_k"])), f"  # GGML_TYPE_{s['type_k'].upper()}"),
        ("type_v", repr(ggml_type_id(s["type_v"])), f"  # GGML_TYPE_{s['type_v'].upper()}"),
        ("use_mmap", repr(s["use_mmap"]), ""),
        ("n_gpu_layers", repr(s["n_gpu_layers"]), ""),
    ]
    body = "".join(f"    {name}={value},{comment}\n" for name, value, comment in arguments)
    note = ""
    if s["type_k"] != s["type_v"]:
        note = "# V stays f16: llama.cpp stores a quantized V cache only with flash_attn=True.\n"
    return f"{evidence_comment(profile)}from llama_cpp import Llama\n\n{note}llm = Llama(\n{body})\n"


def render_llama_cpp_python_server(profile: DeploymentProfile) -> str:
    """llama-cpp-python's OpenAI-compatible server (``python3 -m llama_cpp.server``) with the measured settings.

    Argument names are the fields of ``llama_cpp/server/settings.py`` (0.3.36), booleans spelled ``true``/``false``
    as its ``cli._parse_bool_arg`` reads them, cache types as ggml type ids (its ``type_k``/``type_v`` are ints).
    """
    s = _settings(profile)
    argv = [
        "python3", "-m", "llama_cpp.server", "--model", profile.artifact.path,
        "--n_ctx", str(s["n_ctx"]),
        "--n_threads", str(s["n_threads"]), "--n_threads_batch", str(s["n_threads"]),
        "--n_batch", str(s["n_batch"]), "--n_ubatch", str(s["n_ubatch"]),
        "--flash_attn", _flag(s["flash_attn"]),
        "--type_k", str(ggml_type_id(s["type_k"])), "--type_v", str(ggml_type_id(s["type_v"])),
        "--use_mmap", _flag(s["use_mmap"]),
        # The server's defaults differ from Llama()'s, which autotune measured: it mlocks the model where it can,
        # and keeps logits for every prompt token (n_ctx x vocabulary floats more memory).
        "--use_mlock", "false", "--logits_all", "false",
        "--n_gpu_layers", str(s["n_gpu_layers"]),
    ]
    types = f"# --type_k {ggml_type_id(s['type_k'])} is {s['type_k']}, --type_v {ggml_type_id(s['type_v'])} is {s['type_v']}"
    if s["type_k"] != s["type_v"]:
        types += " (V stays f16: llama.cpp stores a quantized V cache only with flash attention)"
    return f"{evidence_comment(profile)}{types}.\n{shlex.join(argv)}\n"


def _flag(value: bool) -> str:
    return "true" if value else "false"


VLLM_DOCS = "https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html"
"""The engine arguments the ``vllm`` export uses, as vLLM 0.8.5 documents them."""


def render_vllm(profile: DeploymentProfile) -> str:
    """``vllm serve`` of the GGUF artifact with what maps from the measured llama.cpp settings, and what does not.

    Not run here: vLLM needs a GPU, or its CPU build, which is not installable on the machines autotune is tested
    on. The tests check the command against the flags and value types of ``VLLM_DOCS``.
    """
    s = _settings(profile)
    argv = ["vllm", "serve", profile.artifact.path, "--load-format", "gguf"]
    notes = [
        f"vLLM command from a llama.cpp profile: not run by autotune (vLLM needs a GPU or its CPU build). Flags as {VLLM_DOCS}.",
        "GGUF in vLLM is experimental (docs: features/quantization/gguf) and needs the original model's tokenizer.",
    ]
    if profile.model.format == "hf":
        argv += ["--tokenizer", profile.model.path]
    else:
        notes.append("Add --tokenizer with the original model's Hugging Face id or folder: converting the GGUF's own "
                     "tokenizer is slow and not always right.")
    argv += ["--max-model-len", str(s["n_ctx"]),
             # autotune measured one stream at a time; vLLM would otherwise batch up to 256 (or 1024) sequences.
             "--max-num-seqs", "1"]
    notes += [
        "Not mapped (vLLM has no counterpart, or decides itself):",
        f"  threads {s['n_threads']}: vLLM's CPU backend binds cores with VLLM_CPU_OMP_THREADS_BIND (e.g. 0-1 for "
        "two); on a GPU it does not apply",
        f"  batch {s['n_batch']} / micro-batch {s['n_ubatch']}: vLLM schedules its own (--max-num-batched-tokens)",
        f"  flash attention {'on' if s['flash_attn'] else 'off'}: vLLM picks its attention backend",
        f"  KV cache K={s['type_k']} V={s['type_v']}: vLLM's --kv-cache-dtype offers auto and fp8 only",
        f"  mmap {'on' if s['use_mmap'] else 'off'}; {s['n_gpu_layers']} GPU layers: vLLM loads the whole model "
        "onto its device",
        "The measured figures above are llama.cpp's on the measured machine, not vLLM's.",
    ]
    comments = "".join(f"# {note}\n" for note in notes)
    return f"{evidence_comment(profile)}{comments}{shlex.join(argv)}\n"


EXPORTERS = (
    Exporter(name="llama-server", description="llama.cpp's HTTP server command line (for a llamacpp-server "
             "profile: the measured command)", render=render_llama_server, backends=BACKENDS + SERVER_BACKENDS,
             command=served_command),
    Exporter(name="ollama", description="Ollama Modelfile (flash attention / KV type as server settings)",
             render=render_ollama, backends=BACKENDS),
    Exporter(name="llama-cpp-python", description="Python snippet constructing llama_cpp.Llama",
             render=render_llama_cpp_python, backends=BACKENDS),
    Exporter(name="llama-cpp-python-server",
             description="llama-cpp-python's OpenAI-compatible server (python3 -m llama_cpp.server)",
             render=render_llama_cpp_python_server, backends=BACKENDS),
    Exporter(name="vllm", description="vllm serve of the GGUF (what maps; not run by autotune)",
             render=render_vllm, backends=BACKENDS),
)
"""The exporters this plugin contributes."""
