"""What needs no llama.cpp runtime: exports, build-info parsing, importing without llama_cpp."""

from __future__ import annotations

import ast
import importlib
import shlex
import sys

import pytest

from autotune import Exporter, Measurement, evidence_comment
from autotune.budget import Budget
from autotune.errors import AutotuneError
from autotune.profile.schema import ArtifactInfo, BackendInfo, DeploymentProfile, ModelInfo, Predicted
from autotune.workload import Workload
from autotune_llamacpp import EXPORTERS
from autotune_llamacpp.runtime_info import INSTALL_HINT, parse_system_info


def _profile(path: str, **params: object) -> DeploymentProfile:
    return DeploymentProfile(
        autotune_version="0.1.0", hardware={"fingerprint": "abc"},
        model=ModelInfo(path=path, format="gguf", sha256="0" * 64),
        backend=BackendInfo(name="llamacpp", version="0.3.36"),
        params={"quant": "Q4_0", "n_threads": 2, "n_batch": 512, "n_ubatch": 128, "flash_attn": False,
                "type_kv": "q8_0", "use_mmap": False, **params},
        artifact=ArtifactInfo(path=path, format="gguf", precision="Q4_0", bits_per_weight=4.5, size_bytes=100,
                              details={"sliding_window": 512}),
        workload=Workload(context=1024), budget=Budget.parse("2GB", "50ms"), objective="fastest",
        measured=Measurement(load_s=0.1, ttft_ms=10, itl_p50_ms=5, itl_p95_ms=6, decode_tps=200, prefill_tps=900,
                             peak_rss_bytes=10**8, runs=3, spread=0.01),
        predicted=Predicted(memory_bytes=10**8),
    )


NASTY_PATH = "/tmp/my models/it's a \"q\"; rm -rf ~ $(id).gguf"


def _exporter(name: str):  # noqa: ANN202 - test helper
    return next(e for e in EXPORTERS if e.name == name)


def test_llama_server_command_round_trips_through_the_shell() -> None:
    # comments=True: the export starts with the evidence lines, shell comments.
    argv = shlex.split(_exporter("llama-server").render(_profile(NASTY_PATH)), comments=True)
    assert argv[:3] == ["llama-server", "-m", NASTY_PATH]
    assert argv[-1] == "--swa-full"  # the one switch without a value
    flags = dict(zip(argv[3:-1:2], argv[4:-1:2], strict=True))
    assert flags["-c"] == "1024" and flags["-t"] == flags["-tb"] == "2"
    assert (flags["-b"], flags["-ub"], flags["-fa"], flags["-ngl"]) == ("512", "128", "off", "0")
    assert (flags["-ctk"], flags["-ctv"]) == ("q8_0", "f16")  # V cache stays f16 without flash attention
    assert (flags["--load-mode"], flags["-np"], flags["--cache-ram"]) == ("none", "1", "0")


def _ollama_unquote(value: str) -> str:
    """Ollama's parser/parser.go ``unquote`` for a FROM value."""
    if value.startswith('"""'):
        assert value.endswith('"""') and len(value) >= 6
        return value[3:-3]
    if value.startswith('"'):
        assert value.endswith('"') and len(value) >= 2
        return value[1:-1]
    return value


def test_ollama_modelfile_quotes_the_path() -> None:
    text = _exporter("ollama").render(_profile(NASTY_PATH, flash_attn=True))
    from_line = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert _ollama_unquote(from_line.removeprefix("FROM ").strip()) == NASTY_PATH
    assert "PARAMETER num_ctx 1024" in text and "PARAMETER use_mmap false" in text
    assert "# Start the server with the measured settings: OLLAMA_FLASH_ATTENTION=1 OLLAMA_KV_CACHE_TYPE=q8_0 " \
           "ollama serve\n" in text


def test_ollama_server_line_is_a_command_to_paste_with_flash_attention_off_too() -> None:
    # K quantized, flash attention off: the line once read "# Server settings measured: flash attention off
    # ollama serve", which is neither a sentence nor a command.
    text = _exporter("ollama").render(_profile(NASTY_PATH))
    line = next(line for line in text.splitlines() if "ollama serve" in line)
    command = line.split(": ", 1)[1]
    assert shlex.split(command) == ["OLLAMA_FLASH_ATTENTION=0", "ollama", "serve"]
    simple = _exporter("ollama").render(_profile("/models/plain dir/m.gguf"))
    assert 'FROM "/models/plain dir/m.gguf"' in simple
    with pytest.raises(AutotuneError, match="Modelfile"):
        _exporter("ollama").render(_profile('/bad/"""/m.gguf'))


def test_llama_cpp_python_snippet_is_valid_python() -> None:
    text = _exporter("llama-cpp-python").render(_profile(NASTY_PATH))
    call = next(node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Llama")
    keywords = {k.arg: k.value for k in call.keywords}
    assert ast.literal_eval(keywords["model_path"]) == NASTY_PATH
    assert ast.literal_eval(keywords["n_ctx"]) == 1024 and ast.literal_eval(keywords["use_mmap"]) is False
    assert ast.literal_eval(keywords["type_k"]) == 8  # GGML_TYPE_Q8_0
    assert ast.literal_eval(keywords["type_v"]) == 1  # GGML_TYPE_F16


@pytest.mark.parametrize("exporter", EXPORTERS, ids=lambda e: e.name)
def test_every_export_starts_with_the_evidence_of_its_profile(exporter: Exporter) -> None:
    profile = _profile(NASTY_PATH)
    text = exporter.render(profile)
    assert text.startswith(evidence_comment(profile))
    assert "decode 200.0 tok/s" in text and "Q4_0" in text.splitlines()[0]


@pytest.mark.parametrize("hostile", ["a\x00b.gguf", "lone \ud800.gguf", "two\nlines.gguf", "rtl\u202e.gguf"])
def test_evidence_of_a_hostile_model_name_stays_a_comment(hostile: str) -> None:
    """The model's file name is in the evidence: a NUL, a surrogate or a line break must not break the export."""
    profile = _profile("/m/model.gguf")
    profile = profile.model_copy(update={"model": profile.model.model_copy(update={"path": f"/m/{hostile}"})})
    ast.parse(_exporter("llama-cpp-python").render(profile))
    text = _exporter("llama-server").render(profile)
    text.encode()  # writable as UTF-8
    assert shlex.split(text, comments=True)[0] == "llama-server"


def test_exporters_apply_only_to_llamacpp() -> None:
    assert all(e.applies_to("llamacpp") and not e.applies_to("onnxruntime") for e in EXPORTERS)


def test_system_info_parsing() -> None:
    info = parse_system_info("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | REPACK = 1 | CUDA : ARCHS = 900 | ")
    assert info == {"CPU": ["sse3", "avx2", "repack"], "CUDA": ["archs"]}


def test_imports_and_reports_without_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    for name in [m for m in sys.modules if m == "autotune_llamacpp" or m.startswith("autotune_llamacpp.")]:
        monkeypatch.delitem(sys.modules, name)
    plugin = importlib.import_module("autotune_llamacpp.plugin")
    backends = list(plugin.autotune_backends())
    assert [b.name for b in backends] == ["llamacpp", "llamacpp-server"]
    for backend in backends:  # the server backend measures llama.cpp's own build: it needs llama-cpp-python too
        availability = backend.availability()
        assert not availability.available and availability.reason == INSTALL_HINT, (backend.name, availability)
    assert {e.name for e in plugin.autotune_exporters()} == {"llama-server", "ollama", "llama-cpp-python",
                                                            "llama-cpp-python-server", "vllm"}
