"""Generate a tiny Hugging Face llama model folder (random weights, a real BPE tokenizer) for tests.

The folder has what transformers, the onnxruntime-genai model builder, OpenVINO's converters and
mlx-lm expect from a llama checkpoint: ``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json`` and ``generation_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

TRAINING_TEXT = (
    "The quick brown fox jumps over the lazy dog. A small language model runs on a laptop, a phone or a server. "
    "Quantization trades a little quality for memory and speed: eight bits, five bits, four bits per weight. "
    "def tune(model, budget):\n    return measure(model, threads=2)\n"
    "Numbers like 3.14, 2048 and 1,000,000 appear in text; so do lists: first, second, third. "
    "She said, \"Will it fit in two gigabytes?\" He answered, \"Only if we measure it.\" "
)


def _train_tokenizer(vocab_size: int) -> Any:  # tokenizers has no public type for its Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([TRAINING_TEXT] * 20, trainer=trainer)
    # llama checkpoints prepend BOS; the post-processor makes every consumer of tokenizer.json agree.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return tokenizer


def make_tiny_hf(
    folder: Path,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 256,
    vocab: int = 384,
    context: int = 512,
    seed: int = 0,
) -> Path:
    """Write a random-weight ``LlamaForCausalLM`` checkpoint into ``folder`` and return it.

    Dimensions are multiples of 32 (and hidden of 128 by default) so 4-bit group quantization with
    group sizes 32/64/128 applies to every linear layer.
    """
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab)
    vocab_size = tokenizer.get_vocab_size()
    tokenizer.save(str(folder / "tokenizer.json"))
    head_dim = hidden // heads
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": weight(vocab_size, hidden), "model.norm.weight": np.ones(hidden, np.float32),
               "lm_head.weight": weight(vocab_size, hidden)}
    for i in range(layers):
        prefix = f"model.layers.{i}."
        tensors.update({
            prefix + "self_attn.q_proj.weight": weight(heads * head_dim, hidden),
            prefix + "self_attn.k_proj.weight": weight(kv_heads * head_dim, hidden),
            prefix + "self_attn.v_proj.weight": weight(kv_heads * head_dim, hidden),
            prefix + "self_attn.o_proj.weight": weight(hidden, heads * head_dim),
            prefix + "mlp.gate_proj.weight": weight(intermediate, hidden),
            prefix + "mlp.up_proj.weight": weight(intermediate, hidden),
            prefix + "mlp.down_proj.weight": weight(hidden, intermediate),
            prefix + "input_layernorm.weight": np.ones(hidden, np.float32),
            prefix + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        })
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers, "head_dim": head_dim, "vocab_size": vocab_size,
        "max_position_embeddings": context, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False, "mlp_bias": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "model_max_length": context, "add_bos_token": True, "clean_up_tokenization_spaces": False,
    }))
    return folder
