"""Tokenization with a model folder's ``tokenizer.json`` (the ``tokenizers`` library), BOS as the model expects.

HF folders and the builder's output both carry ``tokenizer.json``; its post-processor adds BOS
for models trained with one (Llama, Gemma) and nothing for those without (SmolLM2). A folder
whose ``tokenizer_config.json`` says ``add_bos_token: true`` but whose post-processor does not
add it gets BOS prepended, as transformers would. Checked against llama.cpp's tokenizer on
SmolLM2-135M and Gemma 3 270M GGUFs: identical ids.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from autotune import prompt_text_tokens
from autotune.errors import ModelSourceError


@lru_cache(maxsize=4)
def _load(folder: str) -> tuple[Any, int | None]:
    from tokenizers import Tokenizer

    path = Path(folder)
    if not (path / "tokenizer.json").is_file():
        raise ModelSourceError(f"{folder} has no tokenizer.json; re-export the model with its tokenizer")
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    bos_id = None
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        bos = config.get("bos_token")
        bos = bos.get("content") if isinstance(bos, dict) else bos
        if config.get("add_bos_token") and bos is not None:
            bos_id = tokenizer.token_to_id(bos)
    return tokenizer, bos_id


def encode(folder: Path, text: str) -> list[int]:
    """Token ids of ``text`` as the model in ``folder`` expects them."""
    tokenizer, bos_id = _load(str(Path(folder).resolve()))
    ids = list(tokenizer.encode(text).ids)
    if bos_id is not None and (not ids or ids[0] != bos_id):
        ids.insert(0, bos_id)
    return ids


def prompt_tokens(folder: Path, count: int) -> list[int]:
    """The first ``count`` ids of ``PROMPT_TEXT`` repeated as needed (BOS, if any, only at the start)."""
    tokenizer, _ = _load(str(Path(folder).resolve()))
    return prompt_text_tokens(lambda text, first: encode(folder, text) if first
                              else list(tokenizer.encode(text, add_special_tokens=False).ids), count)
