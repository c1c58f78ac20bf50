"""Tokenization for an OpenVINO IR folder: the HF ``tokenizer.json`` the conversion writes next to the IR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError


def load_tokenizer(model_dir: Path) -> Any:
    """The HF ``tokenizer.json`` next to the IR, through the tokenizers library."""
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise AutotuneError(f"{model_dir} has no tokenizer.json; convert the model with autotune's hf-to-openvino conversion")
    return Tokenizer.from_file(str(path))
