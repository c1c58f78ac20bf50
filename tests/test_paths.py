"""Paths and files: the file the user gave this time, content hashes that notice a rewrite, bounded reads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autotune.errors import AutotuneError, ModelSourceError
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


def finishes_within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; the exception it raised (None: none), or fail when it hangs (a FIFO would)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    return outcome[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("odd", ["/dev/zero", "fifo", "folder", "huge"])
def test_an_odd_hardware_description_is_one_line_and_read_bounded(odd: str, tmp_path: Path, fifo: Path) -> None:
    from autotune.probe.machine import load_hardware

    paths = {"/dev/zero": Path("/dev/zero"), "fifo": fifo, "folder": tmp_path}
    if odd == "huge":
        paths["huge"] = tmp_path / "huge.json"
        paths["huge"].write_bytes(b" " * (5 * 2**20) + b"{}")
    error = finishes_within(10, lambda: load_hardware(paths[odd]))
    assert isinstance(error, AutotuneError) and "\n" not in str(error), error
    assert "AUTOTUNE_HARDWARE_JSON" in str(error)
    assert {"/dev/zero": "a device", "fifo": "a pipe", "folder": "a folder", "huge": "larger than 4 MiB"}[odd] in str(error)


def test_only_the_scored_part_of_a_large_eval_text_is_read_and_tokenized(tmp_path: Path) -> None:
    from autotune.measure.quality_eval import scored_text
    from autotune.options import TuneOptions

    big = tmp_path / "big.txt"
    big.write_text("Ein Wort über Messungen. " * 400_000, encoding="utf-8")  # 10 MB
    tokenized: list[int] = []

    class Counting(FakeBackend):
        def tokenize(self, source: ModelSource, text: str) -> list[int]:
            tokenized.append(len(text))
            return super().tokenize(source, text)

    backend = Counting()
    options = TuneOptions(eval_text=big, eval_tokens=256)
    text, tokens = scored_text(backend, backend.inspect(big), options)
    assert 240 <= len(tokens) <= 256 and sum(tokenized) <= 3 * 64 * 2**10 and text.endswith(("Ein", "Wort", "über"))
    assert len(tokens) == len(text.encode())  # the fake's tokens are bytes: the scored tokens cover the text exactly
    assert big.read_text(encoding="utf-8").startswith(text)


@pytest.mark.parametrize("odd", ["/dev/zero", "fifo"])
def test_an_odd_eval_text_is_one_line(odd: str, fifo: Path) -> None:
    from autotune.measure.quality import load_eval_text

    error = finishes_within(10, lambda: load_eval_text(fifo if odd == "fifo" else Path(odd)))
    assert isinstance(error, AutotuneError) and "not a regular file" in str(error) and "--eval-text" in str(error)


def test_model_paths_that_cannot_be_a_model_are_one_line(tmp_path: Path, fifo: Path) -> None:
    from autotune.model.source import detect_format

    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.gguf"))
    latin1.write_bytes(b"GGUF" + bytes(64))
    error = finishes_within(10, lambda: detect_format(latin1))
    assert isinstance(error, ModelSourceError) and "caf\\xe9.gguf is not UTF-8 text" in str(error)
    error = finishes_within(10, lambda: detect_format(fifo))
    assert isinstance(error, ModelSourceError) and "not a regular file or folder" in str(error)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    os.symlink("/dev/zero", folder / "config.json")
    error = finishes_within(10, lambda: detect_format(folder))
    assert isinstance(error, ModelSourceError) and "model config" in str(error) and "a device" in str(error)


def test_a_245_character_model_name_gives_file_names_a_file_system_takes() -> None:
    from autotune.cli.run import profile_stem

    stem = profile_stem(Path("/models") / ("m" * 245 + ".gguf"), "3d462888" + "0" * 56)
    assert stem.endswith("-3d462888") and len(f"{stem}.pareto.png") <= 255 and len(f"{stem}.html") <= 255


def test_a_cache_that_cannot_be_written_is_one_line_naming_it(tmp_path: Path, model: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("AUTOTUNE_CACHE", str(blocked))
    with pytest.raises(AutotuneError) as raised:
        tune_with_plugins(model, InlineBackends(FakeBackend()), trials=2)
    assert f"the cache {blocked} cannot be written" in str(raised.value) and "AUTOTUNE_CACHE" in str(raised.value)
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        monkeypatch.setenv("AUTOTUNE_CACHE", str(readonly))
        with pytest.raises(AutotuneError, match="readonly cannot be written.*AUTOTUNE_CACHE"):
            tune_with_plugins(model, InlineBackends(FakeBackend()), trials=2)


def test_a_cache_whose_files_cannot_be_created_fails_before_any_trial(tmp_path: Path, model: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only file system the issue met, as the kernel answers it (EROFS), without needing one here."""
    import errno
    import tempfile

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(AutotuneError, match=r"cannot be written \(Read-only file system\).*AUTOTUNE_CACHE"):
        tune_with_plugins(model, InlineBackends(FakeBackend()), trials=2)


def test_an_odd_safetensors_file_is_one_line(tmp_path: Path, fifo: Path) -> None:
    import struct

    from autotune.model.hf_folder import safetensors_header

    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", 2**60) + b"{}")  # a damaged length: read whole before, as JSON
    error = finishes_within(10, lambda: safetensors_header(lying))
    assert isinstance(error, ModelSourceError) and "header" in str(error)
    error = finishes_within(10, lambda: safetensors_header(fifo))
    assert isinstance(error, ModelSourceError) and "a pipe" in str(error)
    good = tmp_path / "good.safetensors"
    body = b'{"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}'
    good.write_bytes(struct.pack("<Q", len(body)) + body + bytes(4))
    assert safetensors_header(good) == {"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}
