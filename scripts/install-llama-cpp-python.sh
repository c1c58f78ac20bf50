#!/usr/bin/env bash
# Build llama-cpp-python for the CPU of this machine and install it with the pip given as $1.
#
# The CPU flags (native minus AMX on x86-64) and why: scripts/cpu-flags.sh, shared with build-llama-server.sh.
# pip's wheel cache does not key on CMAKE_ARGS, so a wheel built with other flags (or on another CPU) would be
# silently reused. This script builds with --no-cache-dir into its own cache folder whose name hashes everything
# that decides the binary: version, CMake arguments, architecture, the CPU's feature flags and the compiler.
set -euo pipefail

PIP=${1:?usage: install-llama-cpp-python.sh PATH/TO/pip}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
# shellcheck source=cpu-flags.sh
. "$(dirname "$0")/cpu-flags.sh"
KEY=$(build_key "$VERSION")

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
