#!/usr/bin/env bash
# Build llama-cpp-python for the CPU of this machine and install it with the pip given as $1.
#
# Which CPU paths the build compiles, and why:
#   * GGML_NATIVE=ON: autotune tunes the machine it runs on, so the runtime it measures is compiled for that
#     machine's ISA (AVX2/AVX-512/VNNI on x86-64, NEON/SVE/dotprod on ARM), as a user deploying there would.
#   * minus AMX on x86-64 (-mno-amx-tile -mno-amx-int8 -mno-amx-bf16): the AMX matrix path vendored in
#     llama-cpp-python 0.3.36 dies with SIGILL at `tilezero` on Xeon KVM guests that grant AMX (measured on a
#     2-core Sapphire Rapids guest; a plain C test of arch_prctl + ldtilecfg + tilezero runs there, so the fault is
#     ggml's per-thread tile configuration, not the machine). AMX only speeds up large-batch prompt processing of
#     int8/bf16 weights; token decoding, which autotune's latency budget is about, is memory-bound and keeps
#     AVX-512/VNNI. The flags are harmless where AMX is absent (AMD), and GCC's explicit -mno-* wins over
#     -march=native whatever their order.
# pip's wheel cache does not key on CMAKE_ARGS, so a wheel built with other flags (or on another CPU) would be
# silently reused. This script builds with --no-cache-dir into its own cache folder whose name hashes everything
# that decides the binary: version, CMake arguments, architecture, the CPU's feature flags and the compiler.
set -euo pipefail

PIP=${1:?usage: install-llama-cpp-python.sh PATH/TO/pip}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ARCH=$(uname -m)

CMAKE_ARGS="-DGGML_NATIVE=ON"
if [ "$ARCH" = x86_64 ]; then
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS="$CMAKE_ARGS -DCMAKE_C_FLAGS=\"$NO_AMX\" -DCMAKE_CXX_FLAGS=\"$NO_AMX\""
fi
CMAKE_ARGS="$CMAKE_ARGS ${AUTOTUNE_EXTRA_CMAKE_ARGS:-}"

if [ -r /proc/cpuinfo ]; then
    CPU_FLAGS=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo || true)
else
    CPU_FLAGS=$(sysctl -n machdep.cpu.brand_string machdep.cpu.features 2>/dev/null || true)
fi
COMPILER=$(${CC:-cc} --version 2>/dev/null | head -n1 || true)
# sha256sum on Linux, shasum on macOS.
if command -v sha256sum >/dev/null 2>&1; then HASH="sha256sum"; else HASH="shasum -a 256"; fi
KEY=$(printf '%s\n' "$VERSION" "$CMAKE_ARGS" "$ARCH" "$CPU_FLAGS" "$COMPILER" | $HASH | cut -c1-16)

CACHE=${AUTOTUNE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autotune/wheels}/llama-cpp-python-$VERSION-$KEY
if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION for this CPU (about 6 minutes on 2 cores; cached in $CACHE)"
    echo "  CMAKE_ARGS=$CMAKE_ARGS"
    rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
    CMAKE_ARGS="$CMAKE_ARGS" "$PIP" wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -w "$CACHE.tmp"
    printf 'CMAKE_ARGS=%s\nARCH=%s\nCOMPILER=%s\n%s\n' "$CMAKE_ARGS" "$ARCH" "$COMPILER" "$CPU_FLAGS" \
        > "$CACHE.tmp/BUILD-INFO"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
else
    echo "llama-cpp-python $VERSION: reusing the wheel built for this CPU and these flags ($CACHE)"
fi
# --force-reinstall: a wheel from pip's own cache (built with other flags) may already be in the venv.
"$PIP" install --quiet --no-deps --force-reinstall "$CACHE"/llama_cpp_python-*.whl
