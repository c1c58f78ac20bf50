"""A tiny llama-architecture GGUF with random weights and a real byte-level BPE tokenizer.

Tests of llama.cpp-based code need a model that loads, tokenizes ordinary English, quantizes
and runs in milliseconds. ``make_tiny_gguf`` writes one with ``gguf.GGUFWriter`` (F16 matrices,
F32 norms) in well under a second. The tokenizer is a GPT-2 style byte-level BPE whose merges
are learned from a short built-in English text, so English tokenizes into multi-byte tokens
and anything else falls back to bytes.

``hidden=256`` lets K-quants (which need rows divisible by 256) really happen; ``hidden=128``
makes llama.cpp fall back to other tensor types, which is worth testing too.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import numpy as np

BOS_TOKEN = "<|endoftext|>"

_TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. A small model is trained on a little text so that
the tokenizer learns the most common pairs of letters in English words. When the weather is
good, people walk in the park, read the news, and talk with their friends about the things
that matter to them. The history of computing is the history of making machines that are
faster, smaller and cheaper than the ones that came before. In the morning the sun rises in
the east; in the evening it sets in the west. There are many ways to measure how well a
program runs: the time it takes to answer, the memory it uses, and the quality of what it
writes. Language models predict the next word of a sentence from the words that came before
it. They are measured on text they have not seen, and the better they predict it, the lower
their perplexity. This is one of the reasons why people who build them care about the data
they are trained on, and about the hardware they will run on when they are deployed.
"""

# GPT-2's pre-tokenizer, simplified to ASCII classes: good enough to learn merges from.
_WORDS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")

# gguf token types (llama.cpp's llama_token_type)
_NORMAL, _CONTROL = 1, 3
_FILE_TYPE = {"F16": 1, "F32": 0}


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible mapping of the 256 bytes to printable characters (byte-level BPE tokens)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _learn_bpe(n_tokens: int) -> tuple[list[str], list[str]]:
    """Byte tokens plus up to ``n_tokens - 256`` merged tokens learned from the built-in text."""
    byte_map = byte_to_unicode()
    tokens = [byte_map[b] for b in range(256)]
    known = set(tokens)
    words = Counter(_WORDS.findall(_TRAINING_TEXT))
    sequences = {tuple(byte_map[b] for b in word.encode()): count for word, count in words.items()}
    merges: list[str] = []
    while len(tokens) < n_tokens:
        pairs: Counter[tuple[str, str]] = Counter()
        for sequence, count in sequences.items():
            for pair in itertools.pairwise(sequence):
                pairs[pair] += count
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair itself so the vocabulary is deterministic.
        left, right = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(f"{left} {right}")
        merged = left + right
        if merged not in known:
            tokens.append(merged)
            known.add(merged)
        sequences = {_merge(sequence, left, right): count for sequence, count in sequences.items()}
    return tokens, merges


def _merge(sequence: tuple[str, ...], left: str, right: str) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(sequence):
        if i + 1 < len(sequence) and sequence[i] == left and sequence[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(sequence[i])
            i += 1
    return tuple(out)


def make_tiny_gguf(
    path: Path,
    *,
    hidden: int = 256,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ffn: int = 512,
    vocab: int = 512,
    context: int = 512,
    seed: int = 0,
    dtype: str = "F16",
) -> Path:
    """Write a random-weight llama GGUF with a byte-level BPE tokenizer to ``path`` and return it.

    ``vocab`` counts every token: 256 bytes, learned merges and one ``<|endoftext|>`` (BOS/EOS).
    ``dtype`` is ``"F16"`` or ``"F32"`` for the weight matrices (norms are always F32).
    """
    import gguf  # the writer is only needed here; keep ``autotune.testing`` importable without it

    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden ({hidden}) must divide by heads ({heads}) and heads by kv_heads ({kv_heads})")
    if vocab < 258:
        raise ValueError(f"vocab must be at least 258 (256 bytes, a merge, {BOS_TOKEN}); got {vocab}")
    if dtype not in _FILE_TYPE:
        raise ValueError(f"dtype must be one of {sorted(_FILE_TYPE)}; got {dtype!r}")
    head_dim = hidden // heads
    tokens, merges = _learn_bpe(vocab - 1)
    # A short training text may run out of pairs: pad with reserved control tokens.
    tokens += [f"<|reserved_{i}|>" for i in range(vocab - 1 - len(tokens))]
    token_types = [_NORMAL if not t.startswith("<|reserved_") else _CONTROL for t in tokens]
    tokens.append(BOS_TOKEN)
    token_types.append(_CONTROL)
    bos = len(tokens) - 1

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(_FILE_TYPE[dtype])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(bos)
    writer.add_add_bos_token(True)

    rng = np.random.default_rng(seed)
    matrix_dtype = np.float16 if dtype == "F16" else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy shape (rows, cols) is GGUF ne = [cols, rows]: cols is the row length llama.cpp quantizes.
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.05).astype(matrix_dtype)

    def norm(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    kv_width = kv_heads * head_dim
    writer.add_tensor("token_embd.weight", matrix(vocab, hidden))
    for layer in range(layers):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", norm(hidden))
        writer.add_tensor(f"{prefix}.attn_q.weight", matrix(hidden, hidden))
        writer.add_tensor(f"{prefix}.attn_k.weight", matrix(kv_width, hidden))
        writer.add_tensor(f"{prefix}.attn_v.weight", matrix(kv_width, hidden))
        writer.add_tensor(f"{prefix}.attn_output.weight", matrix(hidden, hidden))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", norm(hidden))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", matrix(ffn, hidden))
        writer.add_tensor(f"{prefix}.ffn_up.weight", matrix(ffn, hidden))
        writer.add_tensor(f"{prefix}.ffn_down.weight", matrix(hidden, ffn))
    writer.add_tensor("output_norm.weight", norm(hidden))
    writer.add_tensor("output.weight", matrix(vocab, hidden))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
