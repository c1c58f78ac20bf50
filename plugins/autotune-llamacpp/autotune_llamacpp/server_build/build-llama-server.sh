#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the sources vendored in the installed llama-cpp-python, for the CPU of this
# machine, and print the binary's path (the only line on stdout; progress goes to stderr).
#
# It ships inside the llama.cpp plugin package (autotune_llamacpp/server_build/, with cpu-flags.sh), whose
# llamacpp-server backend runs it on first need, so an installed plugin can build its server without a checkout;
# the checkout's scripts/ links here.
#
# Usage: build-llama-server.sh [--cached] PATH/TO/pip
#   PATH/TO/pip: the pip of the venv whose llama-cpp-python the server must match.
#   --cached: only print the path of a binary already built (exit 3 when there is none); the tests use it.
#
# The tests start the `llama-server` export of a profile with this binary, so it must run the llama.cpp that
# autotune measured: the same llama-cpp-python release (its sdist, vendor/llama.cpp) and the same CPU flags
# (scripts/cpu-flags.sh, shared with install-llama-cpp-python.sh). It is a static binary, without HTTPS and
# without the web UI (whose prebuilt assets would be downloaded), cached in a folder whose name hashes everything
# that decides it, so a second run with the same key only prints the path.
#
# Environment: AUTOTUNE_LLAMA_SERVER_CACHE (the cache folder; default ~/.cache/autotune/llama-server),
# LLAMA_CPP_PYTHON_SDIST (an llama_cpp_python-VERSION.tar.gz already downloaded; else pip downloads it from PyPI),
# LLAMA_CPP_PYTHON_VERSION (default: the version installed for the given pip), AUTOTUNE_BUILD_JOBS (default: the
# number of CPUs), AUTOTUNE_EXTRA_CMAKE_ARGS (appended to the CMake arguments, as for the Python build).
set -euo pipefail

CACHED_ONLY=
if [ "${1:-}" = --cached ]; then CACHED_ONLY=1; shift; fi
PIP=${1:?usage: build-llama-server.sh [--cached] PATH/TO/pip}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-$("$PIP" show llama-cpp-python 2>/dev/null | sed -n 's/^Version: //p')}
if [ -z "$VERSION" ]; then
    echo "llama-cpp-python is not installed for $PIP: run scripts/install-llama-cpp-python.sh $PIP first" >&2
    exit 1
fi
# shellcheck source=cpu-flags.sh
. "$(dirname "$0")/cpu-flags.sh"

# The options of this build besides the CPU flags. LLAMA_OPENSSL=OFF: a model server on localhost needs no HTTPS,
# and the binary must not depend on which OpenSSL headers happen to be installed. No web UI: its assets come from
# the network or npm, neither of which a test needs.
SERVER_ARGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF
             -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF)
KEY=$(build_key llama-server "$VERSION" "${SERVER_ARGS[*]}")
CACHE=${AUTOTUNE_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autotune/llama-server}/$VERSION-$KEY

if [ -x "$CACHE/llama-server" ]; then
    echo "llama-server $VERSION: reusing the binary built for this CPU and these flags ($CACHE)" >&2
    echo "$CACHE/llama-server"
    exit 0
fi
if [ -n "$CACHED_ONLY" ]; then
    echo "no llama-server built for llama-cpp-python $VERSION on this CPU in $CACHE: run $0 $PIP (make setup does)" >&2
    exit 3
fi

JOBS=${AUTOTUNE_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
echo "building llama-server from llama-cpp-python $VERSION for this CPU with $JOBS jobs (about 7 minutes on" \
     "2 cores; cached in $CACHE)" >&2
echo "  CMAKE_ARGS=$CMAKE_ARGS ${SERVER_ARGS[*]}" >&2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

SDIST=${LLAMA_CPP_PYTHON_SDIST:-}
if [ -z "$SDIST" ]; then
    # --no-binary :all: fetches the sdist (the wheels on PyPI carry no llama.cpp sources).
    "$PIP" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
    SDIST=$(ls "$WORK"/llama_cpp_python-*.tar.gz)
fi
mkdir -p "$WORK/src"
tar -xzf "$SDIST" -C "$WORK/src" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"

# CMAKE_ARGS is one string with quoted values (the form scikit-build-core reads); xargs splits it the same way
# without running any of it. A while loop rather than mapfile, which macOS's bash 3 lacks.
CPU_ARGV=()
while IFS= read -r arg; do CPU_ARGV+=("$arg"); done < <(printf '%s' "$CMAKE_ARGS" | xargs -n1 printf '%s\n')

LOG="$WORK/build.log"
if ! { cmake -S "$WORK/src" -B "$WORK/build" "${CPU_ARGV[@]}" "${SERVER_ARGS[@]}" \
       && cmake --build "$WORK/build" --config Release --target llama-server -j "$JOBS"; } >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "building llama-server failed (the lines above are the end of the CMake log)" >&2
    exit 1
fi
# A build for the wrong CPU dies here (SIGILL) instead of in every test that starts it.
"$WORK/build/bin/llama-server" --version >&2

rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
cp "$WORK/build/bin/llama-server" "$CACHE.tmp/llama-server"
printf 'llama-cpp-python=%s\nCMAKE_ARGS=%s %s\nARCH=%s\nCOMPILER=%s\n%s\n' "$VERSION" "$CMAKE_ARGS" \
    "${SERVER_ARGS[*]}" "$ARCH" "$COMPILER" "$CPU_FLAGS" > "$CACHE.tmp/BUILD-INFO"
rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
echo "$CACHE/llama-server"
