"""The llama.cpp self-test: decode a tiny quantized model, and what identifies the installed build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autotune import usable_cores_here

from .gguf_info import read_gguf_info
from .loading import greedy
from .quantize import quantize

PROMPT_TOKENS = 32
DECODE_TOKENS = 8

NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
REBUILD = (f'CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS=\'{NO_AMX_FLAGS}\' -DCMAKE_CXX_FLAGS=\'{NO_AMX_FLAGS}\'" '
           "pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python")


def decode_tiny_model(workdir: Path) -> str:
    """Write a tiny random llama GGUF, quantize it to Q4_0 and decode with every usable core.

    Q4_0 and several threads on purpose: the quantized matrix kernels and their per-thread set-up
    are where a build for the wrong CPU features dies (llama.cpp's AMX path on Xeon guests did,
    with SIGILL, on multi-threaded Q4 matmuls), not the F16 path a float model would take.
    """
    import llama_cpp

    from autotune.testing.tiny_gguf import make_tiny_gguf

    source = make_tiny_gguf(workdir / "tiny-f16.gguf", hidden=256, layers=2, vocab=512, context=256)
    quantized = workdir / "tiny-q4_0.gguf"
    threads = usable_cores_here()  # affinity and the cgroup's CPU quota, as the core counts them
    quantize(read_gguf_info(source), "Q4_0", quantized, threads)
    llm = llama_cpp.Llama(model_path=str(quantized), n_ctx=128, n_batch=PROMPT_TOKENS, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    llm.eval([1 + i % 200 for i in range(PROMPT_TOKENS)])
    for _ in range(DECODE_TOKENS):
        llm.eval([greedy(llama_cpp, llm, llm.n_vocab())])
    return f"decoded {DECODE_TOKENS} tokens of a tiny Q4_0 llama GGUF after a {PROMPT_TOKENS}-token prompt, {threads} threads"


def build_identity() -> str:
    """Version plus the size and modification time of the installed shared libraries: a rebuild changes it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return "not installed"
    package = Path(spec.origin).parent
    libraries = sorted(p for p in package.rglob("*") if p.suffix in {".so", ".dylib", ".dll"} or ".so." in p.name)
    parts = [f"{p.relative_to(package)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in libraries]
    return ";".join(parts) or str(package)


def crash_advice(signal_name: str, build_features: str) -> str:
    """What to do when llama.cpp dies by a signal here; ``build_features`` is what the build says it compiled."""
    rebuild = (f"rebuild llama-cpp-python for this CPU without the faulting kernels — in an autotune checkout "
               f"`scripts/install-llama-cpp-python.sh .venv/bin/pip` (native build minus AMX), or {REBUILD} — "
               "then run `autotune plugins --refresh`")
    if "amx" in build_features.split() or any(f.startswith("amx") for f in build_features.split()):
        # Measured on a Xeon KVM guest: this build died with SIGILL (tilezero) on Gemma and SIGSEGV on a tiny Q4_0.
        return f"this build compiled llama.cpp's AMX kernels ({build_features}), which fault on Xeon guests; {rebuild}"
    if signal_name == "SIGILL":
        return rebuild
    return (f"reinstall llama-cpp-python built on this machine ({REBUILD}), then run `autotune plugins --refresh`; "
            "if it still crashes, report it to llama-cpp-python with the output of `autotune plugins --json`")
