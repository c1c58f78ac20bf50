"""Paths and files: the file the user gave this time, content hashes that notice a rewrite, bounded reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from autotune.model.source import cached_content_hash, content_hash


def rewrite_keeping_size_mtime_and_inode(path: Path, data: bytes) -> None:
    """Overwrite ``path`` in place with as many bytes, then set its times back: only the ctime tells."""
    before = path.stat()
    time.sleep(0.05)  # the kernel stamps ctime with a coarse clock: let it tick
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_rewrite_in_place_with_the_same_size_mtime_and_inode_is_hashed_again(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"a" * 100)
    first = cached_content_hash(model)
    rewrite_keeping_size_mtime_and_inode(model, b"GGUF" + b"b" * 100)
    assert cached_content_hash(model) == content_hash(model) != first


def test_a_file_rewritten_inside_a_model_folder_is_hashed_again(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    weights = folder / "sub" / "model.safetensors"
    weights.write_bytes(b"x" * 64)
    first = cached_content_hash(folder)
    assert cached_content_hash(folder) == first  # unchanged: the sidecar answers
    rewrite_keeping_size_mtime_and_inode(weights, b"y" * 64)
    assert cached_content_hash(folder) == content_hash(folder) != first
