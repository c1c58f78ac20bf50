"""Where the user's model comes from: a path, its format and a content hash."""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass, field
from pathlib import Path

from autotune.errors import ModelSourceError
from autotune.files import UnreadableFile, read_json, read_prefix, shown_path


@dataclass(frozen=True)
class ModelSource:
    """A model on disk in one format.

    ``path`` is a file (GGUF) or a folder (HF safetensors, ONNX, OpenVINO IR, MLX).
    ``metadata`` holds what a format reader found (architecture, layers, tensor types, ...).
    """

    path: Path
    format: str
    sha256: str
    architecture: str | None = None
    parameters: int | None = None
    precision: str | None = None
    metadata: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        """A short human name: the file or folder name without a GGUF suffix."""
        return self.path.name.removesuffix(".gguf")

    @property
    def sliding_window(self) -> int | None:
        """The attention window of layers that keep a sliding-window KV cache (Gemma 2/3, Mistral), or None.

        Read from a GGUF's ``<arch>.attention.sliding_window`` (``metadata["sliding_window"]``) or an HF
        ``config.json`` (``sliding_window``, with ``layer_types`` naming the sliding layers when given).
        """
        window = self.metadata.get("sliding_window")
        config = self.metadata.get("config")
        if window is None and isinstance(config, dict):
            nested = config.get("text_config")
            text: dict[str, object] = nested if isinstance(nested, dict) else config
            layer_types = text.get("layer_types") or []
            assert isinstance(layer_types, list)
            if not layer_types or "sliding_attention" in layer_types:
                window = text.get("sliding_window")
        return int(window) if isinstance(window, (int, float)) and window > 0 else None


def check_model_path(path: Path) -> None:
    """Refuse, in one line, a model path autotune cannot carry into a profile or read safely.

    A name that is not UTF-8 (``caf\\xe9.gguf`` from another system's encoding) cannot be written into the
    JSON profile, the study or the exports, which are UTF-8 text; a FIFO or a device is not a model file.
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ModelSourceError(f"the model path {shown_path(path)} is not UTF-8 text, so no profile or export could "
                               "name it; rename the file (or folder) to a UTF-8 name") from None
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ModelSourceError(f"model not found: {shown_path(path)} (pass a .gguf file or a model folder)") from None
    except OSError as error:
        raise ModelSourceError(f"cannot read the model {shown_path(path)}: {error.strerror or error}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelSourceError(f"{shown_path(path)} is not a regular file or folder (a pipe, device or socket); "
                               "pass a .gguf file or a model folder")


def detect_format(path: Path) -> str:
    """Tell which format a model path is in, or raise with what was expected."""
    check_model_path(path)
    if path.is_file():
        try:
            magic, _ = read_prefix(path, 4, "model file")
        except UnreadableFile as error:
            raise ModelSourceError(str(error)) from None
        if magic == b"GGUF":
            return "gguf"
        if path.suffix == ".onnx":
            return "onnx"
        raise ModelSourceError(f"{path} is not a GGUF file (no GGUF magic); pass a .gguf file or a model folder")
    names = {p.name for p in path.iterdir()}
    if "genai_config.json" in names or any(n.endswith(".onnx") for n in names):
        return "onnx"
    if "openvino_model.xml" in names:
        return "openvino"
    if "config.json" in names and any(n.endswith(".safetensors") for n in names):
        try:
            config = read_json(path / "config.json", "model config")
        except UnreadableFile as error:
            raise ModelSourceError(str(error)) from None
        # mlx_lm writes its quantization block into config.json; an HF folder has none.
        return "mlx" if isinstance(config, dict) and "quantization" in config and "quantization_config" not in config \
            else "hf"
    raise ModelSourceError(
        f"cannot tell the format of folder {path}: expected a GGUF file, an HF folder (config.json + "
        "*.safetensors), an ONNX folder, an OpenVINO IR folder or an MLX folder"
    )


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def cached_content_hash(path: Path) -> str:
    """``content_hash``, remembered in a sidecar file of the cache keyed on what a rewrite changes.

    Hashing a 241 MiB model takes about half a second; the sidecar makes every later run free. The key is the
    path with each file's size, mtime, inode and *ctime*: a rewrite in place that keeps the size and sets the
    mtime back (``cp --preserve``, ``touch -r``, ``os.utime``) still moves the ctime, which no user call can set.
    A folder is keyed on every file in it (rewriting a file does not touch its folder's own times).
    """
    from autotune.store.cache import (  # cache.py must stay importable without this module
        cache_dir,
        write_text_atomically,
    )

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    key: list[object] = [str(path.resolve())]
    for file in files:
        stat = file.stat()
        key.append((str(file.relative_to(path)) if file != path else "", stat.st_size, stat.st_mtime_ns,
                    stat.st_ctime_ns, stat.st_ino))
    sidecar = cache_dir() / "hashes" / (hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".sha256")
    try:
        value = sidecar.read_text().strip()
        if len(value) == 64:
            return value
    except OSError:
        pass
    value = content_hash(path)
    write_text_atomically(sidecar, value)
    return value
