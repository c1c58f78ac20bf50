"""Deploy a profile of any backend from Python: ``autotune.load`` gives the runtime's own object, as tuned.

    .venv/bin/autotune run --budget 2GB --latency 50ms          # writes profiles/<model>-<machine>.json
    .venv/bin/python examples/load_any_profile.py profiles/<model>-<machine>.json ["prompt"] [tokens]

What ``autotune.load`` returns for each backend (after checking that the model is still the one measured, and
warning when the runtime version or the machine differs from the profile's):

- ``llamacpp``: a ``llama_cpp.Llama`` with the tuned context, threads, batch sizes and KV-cache types;
- ``onnxruntime``: an ``autotune_onnxruntime.GenaiDeployment``: ``.model`` is the ``onnxruntime_genai.Model``
  with the measured session options (threads, spinning, graph optimizations) and execution provider,
  ``.tokenizer`` its tokenizer, ``.generator_params()`` greedy search within the measured context;
- ``openvino``: an ``openvino_genai.LLMPipeline`` with the measured device and compile properties
  (``INFERENCE_NUM_THREADS``, ``KV_CACHE_PRECISION``, ...) on the stateful (SDPA) KV cache that was measured;
- ``mlx``: an ``autotune_mlx.MlxDeployment``: ``mlx_lm.load``'s ``.model`` and ``.tokenizer``, and ``.settings``
  (KV-cache bits, prefill step) to pass to ``mlx_lm.generate``.

The ONNX Runtime and MLX objects have ``generate(prompt, max_new_tokens)``; this example answers through each
runtime's own call, greedily, as autotune measured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import autotune


def reply(backend: str, loaded: Any, prompt: str, tokens: int) -> str:
    """The greedy continuation of ``prompt`` (at most ``tokens`` tokens) from what ``autotune.load`` returned."""
    if backend == "llamacpp":
        return str(loaded(prompt, max_tokens=tokens, temperature=0.0)["choices"][0]["text"])
    if backend == "openvino":
        config = loaded.get_generation_config()  # the model's own (its EOS token, ...)
        config.max_new_tokens, config.do_sample = tokens, False
        return str(loaded.generate(prompt, config))
    return str(loaded.generate(prompt, max_new_tokens=tokens))  # onnxruntime, mlx


def main() -> int:
    if len(sys.argv) not in (2, 3, 4):
        print(__doc__)
        return 2
    path = Path(sys.argv[1])
    prompt = sys.argv[2] if len(sys.argv) > 2 else "The quick brown fox"
    tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    backend = autotune.load_profile(path).backend.name
    loaded = autotune.load(path)
    print(f"{backend}: {type(loaded).__module__}.{type(loaded).__name__}")
    print(reply(backend, loaded, prompt, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
