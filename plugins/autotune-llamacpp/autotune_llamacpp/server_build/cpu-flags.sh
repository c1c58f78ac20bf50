# Sourced by install-llama-cpp-python.sh and build-llama-server.sh: the CMake arguments that compile llama.cpp for the
# CPU of this machine, and what a build cache must key on. Both builds share them so the llama-server binary that
# tests start runs the same CPU code paths as the llama-cpp-python that autotune measured.
#
# Which CPU paths the builds compile, and why:
#   * GGML_NATIVE=ON: autotune tunes the machine it runs on, so the runtime it measures is compiled for that
#     machine's ISA (AVX2/AVX-512/VNNI on x86-64, NEON/SVE/dotprod on ARM), as a user deploying there would.
#   * minus AMX on x86-64 (-mno-amx-tile -mno-amx-int8 -mno-amx-bf16): the AMX matrix path vendored in
#     llama-cpp-python 0.3.36 dies with SIGILL at `tilezero` on Xeon KVM guests that grant AMX (measured on a
#     2-core Sapphire Rapids guest; a plain C test of arch_prctl + ldtilecfg + tilezero runs there, so the fault is
#     ggml's per-thread tile configuration, not the machine). AMX only speeds up large-batch prompt processing of
#     int8/bf16 weights; token decoding, which autotune's latency budget is about, is memory-bound and keeps
#     AVX-512/VNNI. The flags are harmless where AMX is absent (AMD), and GCC's explicit -mno-* wins over
#     -march=native whatever their order.
#
# Sets: ARCH, CMAKE_ARGS (one string, quoted the way scikit-build-core splits it; AUTOTUNE_EXTRA_CMAKE_ARGS appended),
# CPU_FLAGS, COMPILER, and the function build_key WORDS... (16 hex digits hashing the words and all of the above).

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

# A cache folder name: everything that decides the binary (callers pass the version and what else they build with).
build_key() {
    local hash="sha256sum"
    command -v sha256sum >/dev/null 2>&1 || hash="shasum -a 256"  # macOS
    printf '%s\n' "$@" "$CMAKE_ARGS" "$ARCH" "$CPU_FLAGS" "$COMPILER" | $hash | cut -c1-16
}
