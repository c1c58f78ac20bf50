"""What a GGUF file says about its model: hyperparameters, tokenizer size and every tensor's type.

``gguf.GGUFReader`` builds a numpy view for every element of every metadata array; on Gemma 3
270M (262,144 vocabulary strings) that takes over 10 s and 700 MiB. This reader walks the same
header with ``struct`` over a memory map, keeps scalar values and short arrays, records only the
length of long arrays, and never touches tensor data, so it reads Gemma's header in well under
a second. Type and size tables come from the ``gguf`` package.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.errors import ModelSourceError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SHORT_ARRAY = 64
"""Arrays up to this many elements are kept (per-layer hyperparameters); longer ones only counted."""

# GGUF value types (gguf.GGUFValueType) → struct format of one scalar.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it. ``shape`` is GGUF's ``ne``: ``shape[0]`` is the row length."""

    name: str
    shape: tuple[int, ...]
    type_name: str

    @property
    def n_elements(self) -> int:
        """Number of weights in the tensor."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def n_bytes(self) -> int:
        """Bytes the tensor's data takes in this type."""
        return tensor_bytes(self.shape, self.type_name)


@dataclass(frozen=True)
class ArrayLength:
    """A metadata array too long to keep: its element type and length."""

    value_type: int
    length: int


@dataclass
class GgufInfo:
    """The header of a GGUF file: metadata key/values and tensor descriptions."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        """``general.architecture`` (e.g. ``llama``, ``gemma3``)."""
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """An architecture-scoped value, e.g. ``block_count`` → ``<arch>.block_count``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def per_layer_max(self, key: str, default: int = 0) -> int:
        """A hyperparameter that may be a scalar or a per-layer array (take the largest)."""
        value = self.arch_value(key, default)
        if isinstance(value, list):
            return max(int(v) for v in value) if value else default
        return int(value)

    @property
    def n_layer(self) -> int:
        """Transformer blocks."""
        return int(self.arch_value("block_count", 0))

    @property
    def n_embd(self) -> int:
        """Hidden size."""
        return int(self.arch_value("embedding_length", 0))

    @property
    def n_head(self) -> int:
        """Attention (query) heads."""
        return self.per_layer_max("attention.head_count", 1) or 1

    @property
    def n_head_kv(self) -> int:
        """Key/value heads (grouped-query attention); equals ``n_head`` when not stored."""
        return self.per_layer_max("attention.head_count_kv", self.n_head) or self.n_head

    @property
    def head_dim_k(self) -> int:
        """Per-head key width: ``attention.key_length`` or ``n_embd / n_head``."""
        return int(self.arch_value("attention.key_length", 0) or self.n_embd // max(self.n_head, 1))

    @property
    def head_dim_v(self) -> int:
        """Per-head value width: ``attention.value_length`` or the key width."""
        return int(self.arch_value("attention.value_length", 0) or self.head_dim_k)

    @property
    def context_length(self) -> int:
        """Training context length."""
        return int(self.arch_value("context_length", 0))

    @property
    def sliding_window(self) -> int | None:
        """Sliding-window attention size, when the model has one."""
        value = self.arch_value("attention.sliding_window")
        return int(value) if value else None

    @property
    def vocab_size(self) -> int:
        """Tokenizer vocabulary size (from the token list, else ``<arch>.vocab_size``)."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayLength):
            return tokens.length
        if isinstance(tokens, list):
            return len(tokens)
        return int(self.arch_value("vocab_size", 0))

    @property
    def file_type(self) -> str | None:
        """The precision name from ``general.file_type`` (``Q4_K_M``, ``F16``), when present and known."""
        value = self.metadata.get("general.file_type")
        return file_type_name(int(value)) if value is not None else None

    def tensor_type_counts(self) -> dict[str, int]:
        """How many tensors of each ggml type the file holds."""
        return dict(Counter(t.type_name for t in self.tensors))

    def dominant_type(self) -> str:
        """The ggml type holding the most weights (ignoring 1-D tensors such as norms)."""
        weights: Counter[str] = Counter()
        for tensor in self.tensors:
            if len(tensor.shape) >= 2:
                weights[tensor.type_name] += tensor.n_elements
        return weights.most_common(1)[0][0] if weights else "F32"

    @property
    def precision(self) -> str:
        """The file type name, falling back to the dominant tensor type."""
        return self.file_type or self.dominant_type()

    @property
    def parameters(self) -> int:
        """Total number of weights."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def data_bytes(self) -> int:
        """Bytes of tensor data (without the header and alignment padding)."""
        return sum(t.n_bytes for t in self.tensors)


def file_type_name(value: int) -> str | None:
    """``general.file_type`` integer → name such as ``Q4_K_M``, ``F16`` or ``F32``; None when unknown."""
    import gguf

    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def block_info(type_name: str) -> tuple[int, int]:
    """(weights per block, bytes per block) of a ggml type."""
    import gguf

    try:
        return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    except KeyError:
        raise ModelSourceError(f"unknown ggml tensor type {type_name!r}; upgrade the gguf package") from None


def tensor_bytes(shape: tuple[int, ...], type_name: str) -> int:
    """Bytes of a tensor of ``shape`` (GGUF ``ne``) stored as ``type_name``."""
    block_size, type_size = block_info(type_name)
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block_size * type_size


class _Cursor:
    """Sequential little-endian reads over a memory map."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.offset = 0

    def scalar(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.data, self.offset)[0]
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        raw = self.data[self.offset:self.offset + length]
        self.offset += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.offset += 8 + struct.unpack_from("<Q", self.data, self.offset)[0]

    def value(self, value_type: int) -> Any:
        if value_type in _SCALARS:
            return self.scalar(_SCALARS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            element_type = self.scalar("<I")
            length = self.scalar("<Q")
            if length <= SHORT_ARRAY:
                return [self.value(element_type) for _ in range(length)]
            self.skip(element_type, length)
            return ArrayLength(element_type, length)
        raise ModelSourceError(f"unknown GGUF value type {value_type} at byte {self.offset}")

    def skip(self, element_type: int, length: int) -> None:
        if element_type in _SCALARS:
            self.offset += struct.calcsize(_SCALARS[element_type]) * length
        elif element_type == _STRING:
            for _ in range(length):
                self.skip_string()
        else:  # nested arrays: walk them
            for _ in range(length):
                self.value(element_type)


def read_gguf_info(path: Path) -> GgufInfo:
    """Read a GGUF header (metadata and tensor descriptions) without reading tensor data."""
    import gguf

    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ModelSourceError(f"cannot open {path}: {error.strerror}") from None
    with handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != GGUF_MAGIC:
            raise ModelSourceError(f"{path} is not a GGUF file (no GGUF magic)")
        cursor = _Cursor(data)
        cursor.offset = 4
        try:
            version = cursor.scalar("<I")
            if version not in (2, 3):
                raise ModelSourceError(
                    f"{path}: GGUF version {version} is not supported (only little-endian v2/v3); re-export the model"
                )
            n_tensors = cursor.scalar("<Q")
            n_kv = cursor.scalar("<Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cursor.string()
                metadata[key] = cursor.value(cursor.scalar("<I"))
            tensors = []
            for _ in range(n_tensors):
                name = cursor.string()
                n_dims = cursor.scalar("<I")
                shape = tuple(cursor.scalar("<Q") for _ in range(n_dims))
                type_id = cursor.scalar("<I")
                cursor.scalar("<Q")  # data offset: not needed, the data is never read
                try:
                    type_name = gguf.GGMLQuantizationType(type_id).name
                except ValueError:
                    raise ModelSourceError(f"{path}: tensor {name!r} has unknown ggml type {type_id}") from None
                tensors.append(TensorInfo(name=name, shape=shape, type_name=type_name))
        except struct.error:
            raise ModelSourceError(f"{path} is truncated or corrupt (its GGUF header ends early)") from None
    return GgufInfo(path=path, version=version, metadata=metadata, tensors=tensors)
