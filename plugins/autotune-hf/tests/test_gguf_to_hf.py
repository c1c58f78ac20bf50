"""GGUF → HF conversion on a tiny generated llama GGUF, checked against llama.cpp itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError
from autotune.model.source import detect_format
from autotune.plugins.conversion import find_path
from autotune.plugins.manager import PluginManager
from autotune.testing.tiny_gguf import make_tiny_gguf
from autotune_hf import CONVERSION_RECORD, available, gguf_metadata, gguf_to_hf, inspect_hf_folder
from autotune_hf import plugin as hf_plugin

TEXT = "The quick brown fox jumps over the lazy dog. Numbers like 3.14 and 2048; émoji 🤖 fall back to bytes."


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", hidden=128, ffn=256, vocab=384, dtype="F32")


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_to_hf(tiny_gguf, tmp_path_factory.mktemp("hf") / "tiny-hf")


def _llama(gguf: Path, **kwargs: object):  # noqa: ANN202
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(gguf), verbose=False, **kwargs)


def test_writes_an_hf_folder_with_the_source_recorded(converted: Path, tiny_gguf: Path) -> None:
    assert detect_format(converted) == "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json", CONVERSION_RECORD} <= {p.name for p in converted.iterdir()}
    record = json.loads((converted / CONVERSION_RECORD).read_text())
    assert record == {"source_format": "gguf", "source_file": "tiny.gguf", "architecture": "llama",
                      "file_type": "F32", "dtype": "float32"}
    source = inspect_hf_folder(converted)
    assert source.format == "hf" and source.architecture == "llama" and source.precision == "F32"
    shape = source.metadata["config"]
    assert (shape["hidden_size"], shape["num_hidden_layers"], shape["num_key_value_heads"], shape["vocab_size"]) == (128, 2, 2, 384)
    # embeddings + output + 2 layers × (q, k, v, o, gate, up, down, 2 norms) + final norm
    layer = 128 * 128 * 2 + 2 * 64 * 128 + 3 * 128 * 256 + 2 * 128
    assert source.parameters == 2 * 384 * 128 + 2 * layer + 128


def test_logits_match_llama_cpp(converted: Path, tiny_gguf: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    llm = _llama(tiny_gguf, n_ctx=64, logits_all=True, n_threads=1)
    ids = llm.tokenize(TEXT.encode(), add_bos=True)[:24]
    llm.eval(ids)
    reference = np.array(llm.scores[: len(ids)])
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
    assert (reference.argmax(-1) == logits.argmax(-1)).mean() >= 0.95
    assert np.abs(reference - logits).max() < 0.05 * np.abs(reference).max()


def test_tokenizer_matches_llama_cpp(converted: Path, tiny_gguf: Path) -> None:
    from tokenizers import Tokenizer

    llm = _llama(tiny_gguf, vocab_only=True)
    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    for text in (TEXT, "  two spaces\tand a tab\n", "Hello"):
        assert tokenizer.encode(text).ids == llm.tokenize(text.encode(), add_bos=True, special=False)


def test_digit_splitting_pretokenizer_matches_llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's GGUF says pre=smollm: llama.cpp isolates digits, which transformers alone does not."""
    import gguf
    from tokenizers import Tokenizer

    write_pre = gguf.GGUFWriter.add_tokenizer_pre
    monkeypatch.setattr(gguf.GGUFWriter, "add_tokenizer_pre", lambda self, pre: write_pre(self, "smollm"))
    source = make_tiny_gguf(tmp_path / "smollm.gguf", hidden=64, ffn=128, vocab=300, dtype="F32")
    assert gguf_metadata(source)["tokenizer_pre"] == "smollm"
    converted = gguf_to_hf(source, tmp_path / "hf")
    pre = json.loads((converted / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in pre["pretokenizers"]] == ["Digits", "ByteLevel"]
    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    llm = _llama(source, vocab_only=True)
    for text in ("In 2048, 1,000,000 people.\n\n1. Mix 900 grams", TEXT):
        assert tokenizer.encode(text).ids == llm.tokenize(text.encode(), add_bos=True, special=False)


def test_float16_halves_the_weights(tiny_gguf: Path, converted: Path, tmp_path: Path) -> None:
    half = inspect_hf_folder(gguf_to_hf(tiny_gguf, tmp_path / "f16", dtype="float16"))
    full = inspect_hf_folder(converted)
    assert half.metadata["dtypes"] == {"F16": full.parameters}
    assert half.metadata["bytes"] * 2 == full.metadata["bytes"]


def test_unsupported_architecture_names_the_backends_left_out(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(path, "rwkv6")
    writer.add_name("odd")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_metadata(path)["architecture"] == "rwkv6"
    with pytest.raises(AutotuneError, match=r"'rwkv6'.*onnxruntime, openvino and mlx backends are left out"):
        gguf_to_hf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unavailable_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available() is None
    monkeypatch.setitem(sys.modules, "torch", None)
    reason = available()
    assert reason and "torch" in reason and "pip install" in reason


def test_plugin_contributes_the_conversion() -> None:
    manager = PluginManager()
    manager.register(hf_plugin, "hf")
    conversions = manager.conversions()
    assert [(c.name, c.source_format, c.target_format) for c in conversions] == [("gguf-to-hf", "gguf", "hf")]
    assert find_path(conversions, "gguf", ["hf"]) == conversions
