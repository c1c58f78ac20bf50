"""Render a llama.cpp deployment profile for the tools people run: llama-server, Ollama, llama-cpp-python.

Every render reproduces the measured configuration: the same context, threads (generation and
batch), batch sizes, flash attention, KV-cache types (K only when flash attention is off — see
``runtime_params.kv_cache_types``), mmap and GPU layers. Paths are quoted so the text is safe to
paste: ``shlex`` quoting for the shell, Modelfile string quoting for Ollama, ``repr`` for Python. Each text
starts with ``autotune.evidence_comment``: ``#`` lines naming the profile and the figures measured with it.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from autotune import Exporter, evidence_comment
from autotune.errors import ProfileError, one_line

from .params import llamacpp_params
from .runtime_params import effective

if TYPE_CHECKING:
    from autotune import DeploymentProfile

BACKENDS = ("llamacpp",)


def _settings(profile: DeploymentProfile) -> dict[str, Any]:
    """The measured settings, from the validated parameters (``ProfileError`` names a bad one)."""
    return effective(llamacpp_params(profile.params), profile.workload.context)


def _has_sliding_window(profile: DeploymentProfile) -> bool:
    return bool(profile.artifact.details.get("sliding_window"))


def render_llama_server(profile: DeploymentProfile) -> str:
    """A ``llama-server`` command line (flag spellings of llama.cpp's tools/server/README.md)."""
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
    ]
    if not s["use_mmap"]:
        argv.append("--no-mmap")
    if _has_sliding_window(profile):
        # llama-cpp-python keeps llama.cpp's full-size sliding-window cache; llama-server defaults to the small one.
        argv.append("--swa-full")
    return evidence_comment(profile) + shlex.join(argv) + "\n"


def _modelfile_string(value: str) -> str:
    """Quote a value the way Ollama's Modelfile parser reads it back (``"..."`` or ``\"\"\"...\"\"\"``)."""
    if '"""' in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ProfileError(
            f"the path {value!r} cannot be written in an Ollama Modelfile (it contains '\"\"\"' or a control "
            "character); move the model to a plainer path and export again"
        )
    return f'"""{value}"""' if '"' in value else f'"{value}"'


def render_ollama(profile: DeploymentProfile) -> str:
    """An Ollama Modelfile: ``FROM`` the artifact plus the runner parameters Ollama accepts."""
    s = _settings(profile)
    lines = [f"# Ollama Modelfile from an autotune profile (llama.cpp, {one_line(profile.artifact.label)})."]
    quantized_kv = s["type_k"] != "f16" or s["type_v"] != "f16"
    if s["flash_attn"] or quantized_kv:
        # Flash attention and the KV-cache type are server-wide settings in Ollama, not Modelfile parameters.
        env = ["OLLAMA_FLASH_ATTENTION=1"] if s["flash_attn"] else []
        if s["flash_attn"] and quantized_kv:
            env.append(f"OLLAMA_KV_CACHE_TYPE={s['type_k']}")
        lines.append(f"# Server settings measured: {' '.join(env) or 'flash attention off'} ollama serve")
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


_GGML_TYPE_NAMES = {"f32": "GGML_TYPE_F32", "f16": "GGML_TYPE_F16", "bf16": "GGML_TYPE_BF16", "q8_0": "GGML_TYPE_Q8_0",
                    "q4_0": "GGML_TYPE_Q4_0", "q4_1": "GGML_TYPE_Q4_1", "q5_0": "GGML_TYPE_Q5_0", "q5_1": "GGML_TYPE_Q5_1",
                    "iq4_nl": "GGML_TYPE_IQ4_NL"}


def render_llama_cpp_python(profile: DeploymentProfile) -> str:
    """A Python snippet constructing ``llama_cpp.Llama`` with the measured settings."""
    s = _settings(profile)
    arguments = [
        ("model_path", repr(profile.artifact.path)),
        ("n_ctx", repr(s["n_ctx"])),
        ("n_threads", repr(s["n_threads"])),
        ("n_threads_batch", repr(s["n_threads"])),
        ("n_batch", repr(s["n_batch"])),
        ("n_ubatch", repr(s["n_ubatch"])),
        ("flash_attn", repr(s["flash_attn"])),
        ("type_k", f"llama_cpp.{_GGML_TYPE_NAMES[s['type_k']]}"),
        ("type_v", f"llama_cpp.{_GGML_TYPE_NAMES[s['type_v']]}"),
        ("use_mmap", repr(s["use_mmap"])),
        ("n_gpu_layers", repr(s["n_gpu_layers"])),
    ]
    body = "".join(f"    {name}={value},\n" for name, value in arguments)
    note = ""
    if s["type_k"] != s["type_v"]:
        note = "# V stays f16: llama.cpp stores a quantized V cache only with flash_attn=True.\n"
    return f"{evidence_comment(profile)}import llama_cpp\nfrom llama_cpp import Llama\n\n{note}llm = Llama(\n{body})\n"


EXPORTERS = (
    Exporter(name="llama-server", description="llama.cpp's HTTP server command line",
             render=render_llama_server, backends=BACKENDS),
    Exporter(name="ollama", description="Ollama Modelfile (flash attention / KV type as server settings)",
             render=render_ollama, backends=BACKENDS),
    Exporter(name="llama-cpp-python", description="Python snippet constructing llama_cpp.Llama",
             render=render_llama_cpp_python, backends=BACKENDS),
)
"""The exporters this plugin contributes."""
