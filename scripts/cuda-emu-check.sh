#!/usr/bin/env bash
# Run the LaMPE CUDA kernels (vendor/llama.cpp/ggml/src/ggml-cuda/fattn-lampe.cu) on the CPU, through the
# emulation in tests/cuda_emu/, against the CPU's reference implementation of GGML_OP_FLASH_ATTN_EXT_LAMPE.
# No GPU and no CUDA toolkit needed: the kernels are compiled as host C++ (g++), every CUDA thread a fiber.
# This checks the kernels' indexing, barriers, shuffles and arithmetic, not their speed or the hardware's
# memory model; scripts/device-check.sh runs them on a GPU.
#
#   scripts/cuda-emu-check.sh [filter]     filter: only the cases whose description contains it
#
# Builds ggml-base and ggml-cpu (CPU only) into build/emu-ggml the first time (a few minutes on 2 cores).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLAMA=$ROOT/vendor/llama.cpp
GGML_BUILD=$ROOT/build/emu-ggml
OUT=$ROOT/build/cuda-emu
NICE=${NICE:-19}

if [ ! -f "$GGML_BUILD/bin/libggml-cpu.so" ]; then
    echo "== building ggml-base and ggml-cpu into $GGML_BUILD"
    cmake -S "$LLAMA" -B "$GGML_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null
fi
nice -n "$NICE" ninja -C "$GGML_BUILD" -j 1 ggml-base ggml-cpu >/dev/null

mkdir -p "$OUT"
python3 "$ROOT/tests/cuda_emu/transform.py" "$LLAMA/ggml/src/ggml-cuda/fattn-lampe.cu" "$OUT/emu_lampe.cpp"
nice -n "$NICE" g++ -std=c++17 -O2 -g -fno-strict-aliasing -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-parameter \
    -Wno-unused-function -I "$ROOT/tests/cuda_emu" -I "$LLAMA/ggml/include" -I "$LLAMA/ggml/src" \
    "$OUT/emu_lampe.cpp" "$ROOT/tests/cuda_emu/cuda_emu.cpp" "$ROOT/tests/cuda_emu/lampe_emu_test.cpp" \
    -L "$GGML_BUILD/bin" -lggml-cpu -lggml-base -Wl,-rpath,"$GGML_BUILD/bin" -o "$OUT/lampe_emu_test"
"$OUT/lampe_emu_test" "$@"
