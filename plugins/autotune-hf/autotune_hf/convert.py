"""GGUF → Hugging Face folder, through transformers' own GGUF loader.

transformers reads a GGUF's metadata into a config and tokenizer, dequantizes every tensor to
float and undoes llama.cpp's tensor layout changes (Q/K permutation, Gemma's norm offset). The
result is saved as ordinary safetensors, so any HF-consuming converter (ONNX Runtime's model
builder, OpenVINO, mlx-lm) can take it from there. Quantized GGUF types become float32 (or
float16): the folder is larger than the GGUF but carries no more precision than it, and
``autotune_conversion.json`` records the source type so the tuner knows.

Heavy imports (torch, transformers, gguf) happen inside the functions, so this module imports
without them and ``available()`` says what to install.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from autotune import CONVERSION_RECORD
from autotune.errors import AutotuneError, BackendUnavailable

DTYPES = ("float32", "float16")

HF_BACKENDS = "onnxruntime, openvino and mlx"
"""Backends that need an HF folder (directly or through HF → ONNX) and so depend on this conversion."""

_NOT_CAUSAL = {"t5", "t5encoder", "umt5"}
"""GGUF architectures transformers reads but that are not decoder-only language models."""

DIGIT_SPLIT_PRE_TYPES = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"}
"""``tokenizer.ggml.pre`` values whose llama.cpp pre-tokenizer isolates every digit, then applies
GPT-2's split. transformers (5.24) has no entry for them and falls back to plain GPT-2 splitting,
which tokenizes "\n\n1." or "2048" differently from llama.cpp and the original tokenizer.json."""


def available() -> str | None:
    """``None`` when the conversion can run here, else what to install."""
    missing = [name for name in ("torch", "transformers", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        return f"GGUF → HF conversion needs {', '.join(missing)}: pip install 'slm-autotune-hf[convert]'"
    return None


def gguf_metadata(gguf_path: Path) -> dict[str, Any]:
    """Architecture, model name and file type from a GGUF header (memory-mapped; no tensor is read)."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(gguf_path))

    def field(key: str) -> Any:
        value = reader.fields.get(key)
        if value is None or not value.data:
            return None
        return value.contents()

    file_type = field("general.file_type")
    try:
        file_type_name = LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_") if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {"architecture": field("general.architecture"), "name": field("general.name"), "file_type": file_type_name,
            "tokenizer_model": field("tokenizer.ggml.model"), "tokenizer_pre": field("tokenizer.ggml.pre")}


def match_llama_cpp_pretokenizer(tokenizer: Any, meta: dict[str, Any]) -> bool:
    """Give a byte-level tokenizer the digit-isolating pre-tokenizer llama.cpp uses for its ``pre`` type.

    Returns whether it changed anything: only for ``DIGIT_SPLIT_PRE_TYPES`` that transformers
    does not handle itself.
    """
    from tokenizers import pre_tokenizers

    try:  # the types transformers maps itself (an internal table; absent in other versions)
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as handled
    except ImportError:
        handled = {}
    pre = meta.get("tokenizer_pre")
    if meta.get("tokenizer_model") != "gpt2" or pre not in DIGIT_SPLIT_PRE_TYPES or pre in handled:
        return False
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return True


def supported_architectures() -> list[str]:
    """GGUF architectures this transformers version can turn into a causal language model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in _NOT_CAUSAL | {"general", "tokenizer"})


def check_supported(architecture: str | None) -> None:
    """Raise ``AutotuneError`` naming what is lost when transformers cannot read ``architecture``."""
    import transformers

    supported = supported_architectures()
    if architecture not in supported:
        raise AutotuneError(
            f"transformers {transformers.__version__} cannot convert GGUF architecture {architecture!r} to a "
            f"Hugging Face folder (it reads {', '.join(supported)}), so the {HF_BACKENDS} backends are left out "
            "for this model; tune it with llama.cpp, or pass the original Hugging Face folder with --model"
        )


def _load_model(gguf_path: Path, torch_dtype: Any) -> Any:
    """The causal LM with dequantized weights, built the way ``from_pretrained(gguf_file=...)`` builds it.

    ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` itself is not used: transformers
    5.x tags that model as GGUF-quantized and ``save_pretrained`` then refuses it ("not
    serializable"), and it demands accelerate for a plain CPU load. Its three steps (config from
    the GGUF, an empty model, the dequantized GGUF tensors mapped onto it) give a plain model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    state = {key: torch.as_tensor(value) for key, value in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise AutotuneError(
            f"transformers mapped {gguf_path.name} incompletely (missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); convert the original checkpoint instead"
        )
    model.tie_weights()
    return model


def gguf_to_hf(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Convert a GGUF file into a Hugging Face folder at ``out_dir`` and return ``out_dir``.

    ``dtype`` is ``"float32"`` (default; what the ONNX fp32 reference is built from) or
    ``"float16"`` (half the size). Writes ``config.json``, ``generation_config.json``,
    ``model.safetensors``, the tokenizer files and ``autotune_conversion.json``. Raises
    ``AutotuneError`` for architectures transformers cannot read, and ``BackendUnavailable``
    when torch/transformers/gguf are missing.
    """
    reason = available()
    if reason:
        raise BackendUnavailable(reason)
    if dtype not in DTYPES:
        raise AutotuneError(f"unsupported dtype {dtype!r} for GGUF → HF; use one of {', '.join(DTYPES)}")
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise AutotuneError(f"GGUF file not found: {gguf_path}")
    meta = gguf_metadata(gguf_path)
    check_supported(meta["architecture"])

    import torch
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        match_llama_cpp_pretokenizer(tokenizer, meta)
        model = _load_model(gguf_path, getattr(torch, dtype))
    except (ValueError, KeyError, NotImplementedError) as error:
        raise AutotuneError(
            f"transformers could not read {gguf_path.name} ({meta['architecture']}): {error}; the {HF_BACKENDS} "
            "backends are left out for this model"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = {
        "source_format": "gguf",
        "source_file": gguf_path.name,
        "architecture": meta["architecture"],
        "file_type": meta["file_type"],
        "dtype": dtype,
    }
    (out_dir / CONVERSION_RECORD).write_text(json.dumps(record, indent=2))
    return out_dir
