#!/usr/bin/env bash
# The LaMPE op on CPUs other than this one: build the patched llama.cpp (the libraries and test-backend-ops)
# for each target and run the op's test-backend-ops cases (every CPU kernel path against the CPU reference):
#
#   avx2     x86-64 without AVX-512: GGML_NATIVE=OFF with AVX/AVX2/FMA/F16C/BMI2 (laptops, desktops), run
#            natively (needs an x86-64 CPU with AVX2)
#   aarch64  ARM64 with NEON and dot products (armv8.2-a+dotprod+fp16: Apple Silicon under Linux, Graviton,
#            Ampere, Raspberry Pi 5), cross-built with g++-aarch64-linux-gnu, run under qemu-aarch64
#
# Usage: scripts/cpu-matrix.sh [avx2] [aarch64]     (default: both; run `make vendor` first)
# One build directory per target (build/cpu-<target>), ccache when present: a rerun rebuilds what changed.
# Prints one line per target, `cpu-matrix: <target>: N/N op cases passed`, and exits non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(avx2 aarch64)
JOBS=${JOBS:-$(nproc)}
N_CASES=$(sed -n 's/^N_CASES = \([0-9]*\).*/\1/p' "$ROOT/tests/test_backend_ops.py")
# one query against 512 keys (the tiled split-KV path): F16, Q8_0 and Q4_0 caches, with and without sinks
FA_DECODE="kv=512,nb=1,mask=1,sinks=[01],max_bias=0.000000,logit_softcap=0.000000,prec=f32,type_K=(f16|q8_0|q4_0)"

[ -f "$ROOT/vendor/llama.cpp/CMakeLists.txt" ] || { echo "cpu-matrix: vendor/llama.cpp is missing: run make vendor" >&2; exit 2; }
PATH="$ROOT/.venv/bin:$PATH"  # cmake and ninja from the venv, where make install put them
command -v cmake >/dev/null && command -v ninja >/dev/null || { echo "cpu-matrix: needs cmake and ninja (make install)" >&2; exit 2; }

need() {  # need TOOL DEBIAN-PACKAGE: install the package when the tool is missing and apt-get is there
    command -v "$1" >/dev/null && return 0
    command -v apt-get >/dev/null || { echo "cpu-matrix: $1 is missing (apt-get install $2)" >&2; exit 2; }
    apt-get install -y -qq "$2" >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq "$2" >/dev/null)
}

configure_and_build() {  # DIR CMAKE-ARGS...
    local dir=$1; shift
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF "${launcher[@]}" "$@" >"$dir.configure.log" 2>&1 \
        || { tail -20 "$dir.configure.log" >&2; return 1; }
    cmake --build "$dir" --target pylampe_libs test-backend-ops -j "$JOBS" >"$dir.build.log" 2>&1 \
        || { grep -E "error|Error" "$dir.build.log" | head -20 >&2; return 1; }
    # a warning from the LaMPE code is a failure too
    if grep -E "warning:" "$dir.build.log" | grep -qi lampe; then
        grep -E "warning:" "$dir.build.log" | grep -i lampe >&2
        return 1
    fi
}

no_avx512() {  # the AVX2 build must not contain an AVX-512 instruction: this CPU would run it and hide that
    local n; n=$(objdump -d "$ROOT/build/cpu-avx2/bin/libggml-cpu.so" | grep -c "%zmm" || true)
    [ "$n" -eq 0 ] || { echo "cpu-matrix: avx2: libggml-cpu.so uses AVX-512 ($n instructions)"; return 1; }
}

run_cases() {  # TARGET RUNNER...   (the runner prefix runs the test binary: empty, or qemu)
    local target=$1; shift
    local out; out=$(mktemp)
    local rc=0
    "$@" "$ROOT/build/cpu-$target/bin/test-backend-ops" -b CPU -o FLASH_ATTN_EXT_LAMPE >"$out" 2>&1 || rc=$?
    local passed; passed=$(grep -oE "[0-9]+/[0-9]+ tests passed" "$out" | tail -1 || true)
    if [ $rc -ne 0 ] || [ "$passed" != "$N_CASES/$N_CASES tests passed" ]; then
        tail -30 "$out" >&2
        echo "cpu-matrix: $target: FAILED (${passed:-no result}, exit $rc)"
        rm -f "$out"
        return 1
    fi
    echo "cpu-matrix: $target: ${passed%% tests passed} op cases passed"
    # flash attention's decode by tiles (patch 0008) with F16 and quantized caches, sinks and a mask
    rc=0
    "$@" "$ROOT/build/cpu-$target/bin/test-backend-ops" -b CPU -o FLASH_ATTN_EXT -p "$FA_DECODE" >"$out" 2>&1 || rc=$?
    passed=$(grep -oE "[0-9]+/[0-9]+ tests passed" "$out" | tail -1 || true)
    local n=${passed%%/*}
    if [ $rc -ne 0 ] || [ -z "$passed" ] || [ "${n:-0}" -eq 0 ] || [ "$passed" != "$n/$n tests passed" ]; then
        tail -30 "$out" >&2
        echo "cpu-matrix: $target: flash-attention decode FAILED (${passed:-no result}, exit $rc)"
        rm -f "$out"
        return 1
    fi
    echo "cpu-matrix: $target: ${passed%% tests passed} flash-attention decode cases passed"
    rm -f "$out"
}

status=0
for target in "${TARGETS[@]}"; do
    start=$SECONDS
    case $target in
        avx2)
            grep -qw avx2 /proc/cpuinfo || { echo "cpu-matrix: avx2: skipped, this CPU has no AVX2"; continue; }
            configure_and_build "$ROOT/build/cpu-avx2" \
                -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
                -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
                && no_avx512 && run_cases avx2 || status=1
            ;;
        aarch64)
            need aarch64-linux-gnu-g++ g++-aarch64-linux-gnu
            need qemu-aarch64 qemu-user
            configure_and_build "$ROOT/build/cpu-aarch64" \
                -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
                -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
                -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16 -DGGML_OPENMP=OFF \
                && run_cases aarch64 qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu || status=1
            ;;
        *) echo "cpu-matrix: unknown target $target (avx2, aarch64)" >&2; exit 2 ;;
    esac
    echo "cpu-matrix: $target: $((SECONDS - start)) s"
done
exit $status
