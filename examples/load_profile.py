"""Deploy a profile from Python: the runtime object it describes, with its tuned settings.

    .venv/bin/autotune run --budget 2GB --latency 50ms          # writes profiles/<model>-<machine>.json
    .venv/bin/python examples/load_profile.py profiles/<model>-<machine>.json

``autotune.load`` checks first that the model file is still the one measured, and warns when the runtime
version or the machine differs from the profile's (``strict=True`` refuses instead). For a llama.cpp profile
the object is a ``llama_cpp.Llama``; ``examples/load_any_profile.py`` shows every runtime (ONNX Runtime GenAI,
OpenVINO GenAI's ``LLMPipeline``, mlx-lm).
"""

from __future__ import annotations

import sys

import autotune


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    llm = autotune.load(sys.argv[1])
    output = llm("The quick brown fox", max_tokens=16, temperature=0.0)
    print(output["choices"][0]["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
