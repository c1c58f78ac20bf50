"""What ``autotune.load`` returns for an ``mlx`` profile: mlx-lm's model and tokenizer with the measured settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError

from .params import mlx_params
from .runtime import import_mlx_lm
from .settings import RuntimeSettings


@dataclass(frozen=True)
class MlxDeployment:
    """An MLX folder loaded by mlx-lm, with the runtime settings its profile measured.

    ``model`` and ``tokenizer`` are what ``mlx_lm.load`` returns; ``settings`` are the generation settings
    that were measured (KV-cache bits and group size, quantized from the first token; the prefill step).
    MLX keeps them per call, not in the model: pass ``settings.generate_kwargs()`` to ``mlx_lm.generate`` or
    ``stream_generate``, or call ``generate`` here, as the ``mlx-python`` export does.
    """

    model: Any
    tokenizer: Any
    settings: RuntimeSettings

    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        """The greedy reply to ``prompt`` (at most ``max_new_tokens`` tokens) with the measured settings."""
        mlx_lm = import_mlx_lm()
        reply: str = mlx_lm.generate(self.model, self.tokenizer, prompt=prompt, max_tokens=max_new_tokens,
                                     **self.settings.generate_kwargs())
        return reply


def load_deployment(model_dir: Path, params: Any, kv_group_size: int | None) -> MlxDeployment:
    """``model_dir`` loaded by mlx-lm with ``params``' runtime settings (``kv_group_size``: the artifact's)."""
    typed = mlx_params(params)
    settings = RuntimeSettings(kv_bits=typed.kv_bits, kv_group_size=kv_group_size,
                               prefill_step_size=typed.prefill_step_size)
    if settings.kv_bits < 16 and settings.kv_group_size is None:
        raise AutotuneError("this model's head size is not a multiple of 32, so mlx-lm cannot quantize its KV "
                            "cache; use kv_bits=16")
    if not (model_dir / "config.json").is_file():
        raise AutotuneError(f"artifact missing or incomplete: {model_dir} (no config.json); rebuild it")
    model, tokenizer = import_mlx_lm().load(str(model_dir))
    return MlxDeployment(model=model, tokenizer=tokenizer, settings=settings)
