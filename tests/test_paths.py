"""Paths and files: the file the user gave this time, content hashes that notice a rewrite, bounded reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from autotune.model.source import ModelSource, cached_content_hash, content_hash
from autotune.plugins.backend import Artifact, Params
from autotune.testing import FakeBackend, InlineBackends
from autotune.testing.tuning import tune_with_plugins


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


class SourceAsIs(FakeBackend):
    """The fake backend deploying the source file itself at its own precision (as llama.cpp does a GGUF)."""

    def prepare(self, source: ModelSource, params: Params, workdir: Path) -> Artifact:
        if params["quant"] == "f16":
            return Artifact(path=source.path, format="gguf", precision="f16", bits_per_weight=16.0,
                            size_bytes=source.path.stat().st_size)
        return super().prepare(source, params, workdir)


def test_after_the_model_moved_the_profile_and_exports_name_the_new_path(tmp_path: Path) -> None:
    first = tmp_path / "a" / "model.gguf"
    first.parent.mkdir()
    first.write_bytes(b"GGUF" + bytes(64))
    backend = SourceAsIs()
    before = tune_with_plugins(first, InlineBackends(backend), trials=2, patience=0).profile
    assert before.artifact.path == str(first.resolve())
    moved = tmp_path / "b" / "renamed.gguf"
    moved.parent.mkdir()
    first.rename(moved)
    result = tune_with_plugins(moved, InlineBackends(backend), trials=2, patience=0)
    assert result.new_measurements == 0  # the same content: the stored figures answer
    profile = result.profile
    assert profile.model.path == profile.artifact.path == str(moved.resolve())
    assert profile.exports and all(str(first) not in text for text in profile.exports.values())
