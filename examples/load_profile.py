"""Deploy a profile from Python: the runtime object it describes, with its tuned settings.

    .venv/bin/autotune run --budget 2GB --latency 50ms          # writes profiles/<model>-<machine>.json
    .venv/bin/python examples/load_profile.py profiles/<model>-<machine>.json

``autotune.load`` checks first that the model file is still the one measured, and warns when the runtime
version or the machine differs from the profile's (``strict=True`` refuses instead). Implemented for llama.cpp
profiles (a ``llama_cpp.Llama``); other backends say they cannot load profiles yet and keep their exports.
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
