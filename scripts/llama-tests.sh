#!/usr/bin/env bash
# llama.cpp's own tests that run on a CPU without downloads and touch what pylampe's patches change or what
# a llama-cpp-python program relies on, built from the patched vendor tree (build/llama-tests, ccache):
#
#   test-rope, test-quantize-fns   the RoPE op LaMPE rotates with, the quantized types its K/V cache takes
#   test-batch-alloc               the batch allocator llama_lampe::prepare reads positions from
#   test-sampling, test-grammar-parser, test-grammar-integration, test-llama-grammar
#   test-tokenizer-0 on the vendored vocabularies of the architectures LaMPE covers (llama-spm,
#                    llama-bpe, qwen2, phi-3)
#
# Left out: test-backend-ops in full (thousands of cases; tests/test_backend_ops.py runs the LaMPE op's),
# test-chat (needs the server library), test-tokenizers-ggml-vocabs and test-llama-archs (downloads or
# minutes per architecture), the mtmd and llguidance tests (not built here).
# Usage: scripts/llama-tests.sh   (after make vendor; prints ctest's summary, exits non-zero on a failure)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/llama-tests
PATH="$ROOT/.venv/bin:$PATH"
TARGETS=(test-rope test-quantize-fns test-batch-alloc test-sampling test-grammar-parser
         test-grammar-integration test-llama-grammar test-tokenizer-0)
TESTS="^(test-rope|test-quantize-fns|test-batch-alloc|test-sampling|test-grammar-parser|test-grammar-integration|test-llama-grammar|test-tokenizer-0-(llama-spm|llama-bpe|qwen2|phi-3))$"

[ -f "$ROOT/vendor/llama.cpp/CMakeLists.txt" ] || { echo "llama-tests: vendor/llama.cpp is missing: run make vendor" >&2; exit 2; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$ROOT/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_LLGUIDANCE=OFF >"$BUILD.configure.log" 2>&1 \
    || { tail -20 "$BUILD.configure.log" >&2; exit 1; }
cmake --build "$BUILD" --target "${TARGETS[@]}" -j "${JOBS:-$(nproc)}" >"$BUILD.build.log" 2>&1 \
    || { grep -E "error" "$BUILD.build.log" | head -20 >&2; exit 1; }
cd "$BUILD"
ctest -R "$TESTS" --output-on-failure --timeout 300 | tail -25
