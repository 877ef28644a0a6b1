#!/usr/bin/env bash
# One-shot check of the LaMPE CUDA kernels on a GPU machine: build, op test, reference tests, timings.
#
# Prepare here (the device has no network and none of the git-ignored files):
#   scripts/device-pack.sh
# then, with the device tool, from this repository's checkout:
#   run(command="bash scripts/device-check.sh", carry=[".device"], timeout_s=600)
#
# Steps, most important first, each with its own time limit inside one overall budget (DEVICE_CHECK_BUDGET_S,
# default 570 s, under the tool's 600 s per command), so a slow step cannot take the later ones with it:
#   1. build   the CUDA variant for this GPU's architecture only (nvidia-smi's compute capability):
#              ggml-cuda, llama and test-backend-ops, with all cores                      (~3-5 min)
#   2. op      test-backend-ops -b CUDA0 -o FLASH_ATTN_EXT_LAMPE: the CUDA kernels against the CPU's
#              reference implementation; again forcing each kernel (vec, F32 tile)       (~1 min)
#   3. ref     pytest tests/test_cuda_lampe.py tests/test_lampe_reference.py, every layer on the GPU
#              (PYLAMPE_TEST_N_GPU_LAYERS=999): tiny models against the float64 reference (~1 min)
#   4. props   pytest tests/test_lampe_properties.py, the same way, fewer examples     (~1-2 min)
#   5. bench   a random-weight Q4_0 GGUF of Llama-3-8B's shape (T = 8192), then prefill and decode at 32K
#              and 128K tokens, plain flash attention against LaMPE in one process
#              (benchmarks/gpu_long_ab.py)                                            (~2-3 min)
# Results: $OUT/summary.json (every step's status, seconds and key numbers) and logs; a table at the end.
#
# Environment: DEVICE_CHECK_BUDGET_S [570], DEVICE_CHECK_STEPS [build,op,ref,props,bench],
#   DEVICE_CHECK_PROPERTY_EXAMPLES [20], DEVICE_CHECK_LENGTHS [32768,131072], OUT [./.device-out],
#   DEVICE_CHECK_ARCH [nvidia-smi's], DEVICE_CHECK_DRY (configure, list the build, stop: for machines without a GPU),
#   DEVICE_CHECK_BENCH_SHAPE [llama3-8b] (tiny: to try the bench step on a CPU).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$(date +%s)
BUDGET=${DEVICE_CHECK_BUDGET_S:-570}
DEADLINE=$((T0 + BUDGET))
STEPS=",${DEVICE_CHECK_STEPS:-build,op,ref,props,bench},"
OUT=${OUT:-$ROOT/.device-out}
mkdir -p "$OUT"
DEV=$ROOT/.device
BUILD=${DEVICE_CHECK_BUILD_DIR:-/tmp/pylampe-cuda-build}
NPROC=$(nproc 2>/dev/null || echo 8)
LOG=$OUT/device-check.log
: > "$LOG"
SUMMARY=$OUT/steps.tsv
: > "$SUMMARY"

say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# step NAME LIMIT_S LOGFILE CMD...: run CMD with at most LIMIT_S seconds, less if the budget is short
step() {
    local name=$1 limit=$2 logf=$3
    shift 3
    local left=$((DEADLINE - $(date +%s) - 10))
    if [ "$left" -lt 20 ]; then
        say "$name: skipped, ${left}s left in the budget"
        printf '%s\tskipped\t0\t-\n' "$name" >> "$SUMMARY"
        return 2
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name: start (limit ${limit}s)"
    local s=$(date +%s)
    # a child bash, so that timeout can run the shell functions below (exported) as well as programs
    timeout -k 10 "$limit" bash -c '"$@"' step "$@" >> "$logf" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - s ))
    local status=ok
    [ "$rc" -ne 0 ] && status=failed
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
    say "$name: $status (rc $rc, ${dt}s)"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$rc" >> "$SUMMARY"
    return $rc
}

want() { [[ "$STEPS" == *",$1,"* ]]; }

# ---------------------------------------------------------------------------------------------------------------
# 0. the machine

{
    echo "== machine"
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1
    nvcc --version 2>&1 | tail -n 2
    cmake --version 2>&1 | head -n 1
    echo "ninja $(ninja --version 2>&1)"
    python3 --version 2>&1
    echo "cores: $NPROC"
    cat "$DEV/MANIFEST" 2>&1
} >> "$LOG" 2>&1
cat "$LOG"

CC_RAW=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
ARCH=${DEVICE_CHECK_ARCH:-$CC_RAW}
if [ -z "$ARCH" ]; then
    say "error: no GPU (nvidia-smi gives no compute capability) and no DEVICE_CHECK_ARCH"
    exit 1
fi
say "building for sm_$ARCH"
[ -d "$DEV/llama.cpp" ] || { say "error: .device/llama.cpp missing: run scripts/device-pack.sh here first and carry .device"; exit 1; }

export PYTHONPATH="$ROOT:$DEV/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------------------------------------------------------
# 1. build: a small CMake project around the packed tree (the repository's own CMakeLists.txt expects
#    vendor/llama.cpp, which is not carried), the same options as pylampe's build plus test-backend-ops

build() {
    local proj=/tmp/pylampe-cuda-project
    mkdir -p "$proj"
    cat > "$proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.21)
project(pylampe_device C CXX)
set(BUILD_SHARED_LIBS ON)
set(LLAMA_BUILD_COMMON   OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TESTS    OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TOOLS    OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_SERVER   OFF CACHE BOOL "" FORCE)
set(LLAMA_CURL           OFF CACHE BOOL "" FORCE)
set(LLAMA_OPENSSL        OFF CACHE BOOL "" FORCE)
add_subdirectory($DEV/llama.cpp llama.cpp EXCLUDE_FROM_ALL)
add_executable(test-backend-ops $DEV/llama.cpp/tests/test-backend-ops.cpp)
target_link_libraries(test-backend-ops PRIVATE ggml)
target_compile_features(test-backend-ops PRIVATE cxx_std_17)
set_target_properties(test-backend-ops PROPERTIES RUNTIME_OUTPUT_DIRECTORY \${CMAKE_BINARY_DIR}/bin)
# as pylampe's own build: the libraries find each other next to themselves, in pylampe/lib
foreach(target llama ggml ggml-base ggml-cpu ggml-cuda)
    set_target_properties(\${target} PROPERTIES INSTALL_RPATH "\$ORIGIN" BUILD_WITH_INSTALL_RPATH TRUE)
endforeach()
EOF
    local common=(-S "$proj" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON
                  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGGML_NATIVE=ON)
    if ! cmake "${common[@]}"; then
        # no cuBLAS (or driver stub) in the toolkit: take cuBLAS from the pip wheels next to PyTorch, and the
        # legacy memory pool instead of the VMM one (which links the driver library)
        echo "== configure failed: retrying with cuBLAS from python's nvidia packages and GGML_CUDA_NO_VMM"
        local cu
        cu=$(python3 - <<'PY'
import glob, os, sys
for p in sys.path:
    for lib in glob.glob(os.path.join(p, "nvidia", "cu*", "lib", "libcublas.so.*")) + glob.glob(os.path.join(p, "nvidia", "cublas", "lib", "libcublas.so.*")):
        print(os.path.dirname(os.path.dirname(lib)))
        sys.exit(0)
PY
)
        [ -n "$cu" ] || { echo "no cuBLAS found"; return 1; }
        local links=/tmp/pylampe-cublas
        mkdir -p "$links"
        for l in cublas cublasLt; do
            ln -sfn "$(ls "$cu"/lib/lib$l.so.* | head -n 1)" "$links/lib$l.so"
        done
        rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
        cmake "${common[@]}" -DGGML_CUDA_NO_VMM=ON \
            -DCUDA_cublas_LIBRARY="$links/libcublas.so" -DCUDA_cublasLt_LIBRARY="$links/libcublasLt.so" \
            -DCMAKE_CUDA_FLAGS="-isystem $cu/include" -DCMAKE_CXX_FLAGS="-isystem $cu/include" || return 1
    fi
    # where the CUDA runtime and cuBLAS the build linked are, for the loader (pylampe/lib's run path is \$ORIGIN)
    sed -n -e 's/^CUDAToolkit_LIBRARY_DIR:[A-Z]*=//p' -e 's/^CUDA_cudart_LIBRARY:[A-Z]*=\(.*\)\/[^/]*$/\1/p' \
        -e 's/^CUDA_cublas_LIBRARY:[A-Z]*=\(.*\)\/[^/]*$/\1/p' "$BUILD/CMakeCache.txt" | sort -u > "$BUILD/cuda-libdirs"
    [ -n "${cu:-}" ] && echo "$cu/lib" >> "$BUILD/cuda-libdirs"
    cat "$BUILD/cuda-libdirs"
    if [ -n "${DEVICE_CHECK_DRY:-}" ]; then # trying the script on a machine without a GPU: configure only
        ninja -C "$BUILD" -n ggml-cuda llama test-backend-ops | tail -n 3
        return
    fi
    ninja -C "$BUILD" -j "$NPROC" ggml-cuda llama test-backend-ops || return 1
    # pylampe loads its libraries from pylampe/lib (real files: it checks the resolved path)
    mkdir -p "$ROOT/pylampe/lib"
    cp -L "$BUILD"/bin/lib*.so* "$ROOT/pylampe/lib/"
    ls -la "$ROOT/pylampe/lib"
}

export ROOT DEV BUILD ARCH NPROC
export -f build
if want build; then
    step build 420 "$OUT/build.log" build
    tail -n 5 "$OUT/build.log" | tee -a "$LOG"
fi
if [ -f "$BUILD/cuda-libdirs" ]; then
    while IFS= read -r d; do
        [ -n "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done < "$BUILD/cuda-libdirs"
fi
TBO=$BUILD/bin/test-backend-ops

# ---------------------------------------------------------------------------------------------------------------
# 2. the op against the CPU reference, each kernel path

op_tests() {
    local rc=0
    for kernel in auto vec simt; do
        echo "== GGML_CUDA_LAMPE_KERNEL=$kernel"
        if [ "$kernel" = auto ]; then
            env -u GGML_CUDA_LAMPE_KERNEL "$TBO" -b CUDA0 -o FLASH_ATTN_EXT_LAMPE || rc=1
        else
            GGML_CUDA_LAMPE_KERNEL=$kernel "$TBO" -b CUDA0 -o FLASH_ATTN_EXT_LAMPE || rc=1
        fi
    done
    return $rc
}

export TBO
export -f op_tests
if want op && [ -x "$TBO" ]; then
    step op 120 "$OUT/test-backend-ops.log" op_tests
    grep -E "tests passed|FAIL|not supported" "$OUT/test-backend-ops.log" | sort | uniq -c | head -n 20 | tee -a "$LOG"
fi

# ---------------------------------------------------------------------------------------------------------------
# 3, 4. the tiny-model tests with every layer offloaded

export PYLAMPE_TEST_N_GPU_LAYERS=999
if want ref; then
    step ref 180 "$OUT/pytest.log" python3 -m pytest -q -p no:cacheprovider tests/test_cuda_lampe.py tests/test_lampe_reference.py
    tail -n 25 "$OUT/pytest.log" | tee -a "$LOG"
fi
if want props && [ -f tests/test_lampe_properties.py ]; then
    export PYLAMPE_PROPERTY_EXAMPLES=${DEVICE_CHECK_PROPERTY_EXAMPLES:-20}
    step props 120 "$OUT/pytest.log" python3 -m pytest -q -p no:cacheprovider tests/test_lampe_properties.py
    tail -n 15 "$OUT/pytest.log" | tee -a "$LOG"
fi
unset PYLAMPE_TEST_N_GPU_LAYERS

# ---------------------------------------------------------------------------------------------------------------
# 5. long-context timings, 32K first

if want bench; then
    SHAPE=${DEVICE_CHECK_BENCH_SHAPE:-llama3-8b}
    MODEL=/tmp/$SHAPE-shape-q4_0.gguf
    [ -f "$MODEL" ] || step model 90 "$OUT/bench.log" python3 benchmarks/random_gguf.py --shape "$SHAPE" --out "$MODEL"
    for n in $(echo "${DEVICE_CHECK_LENGTHS:-32768,131072}" | tr ',' ' '); do
        step "bench-$n" 200 "$OUT/bench.log" python3 benchmarks/gpu_long_ab.py -m "$MODEL" --tokens "$n" \
            --json "$OUT/bench.jsonl" -ngl 999
    done
fi

# ---------------------------------------------------------------------------------------------------------------
# summary

python3 - "$SUMMARY" "$OUT" <<'PY' | tee -a "$LOG"
import json, os, re, sys
summary_tsv, out = sys.argv[1], sys.argv[2]
steps = []
for line in open(summary_tsv):
    name, status, secs, rc = line.rstrip("\n").split("\t")
    steps.append({"step": name, "status": status, "seconds": int(secs), "rc": rc})
res = {"steps": steps}
tbo = os.path.join(out, "test-backend-ops.log")
if os.path.exists(tbo):
    res["test_backend_ops"] = re.findall(r"(\d+)/(\d+) tests passed", open(tbo).read())
py = os.path.join(out, "pytest.log")
if os.path.exists(py):
    res["pytest"] = re.findall(r"^=+ (.*(?:passed|failed|error).*) =+$", open(py).read(), re.M)
bench = os.path.join(out, "bench.jsonl")
if os.path.exists(bench):
    res["bench"] = [json.loads(l) for l in open(bench) if l.strip()]
json.dump(res, open(os.path.join(out, "summary.json"), "w"), indent=1)

print("\n| step | status | s |\n|---|---|---|")
for s in steps:
    print(f"| {s['step']} | {s['status']} | {s['seconds']} |")
if res.get("test_backend_ops"):
    print("\ntest-backend-ops (auto, vec, simt):", ", ".join(f"{a}/{b}" for a, b in res["test_backend_ops"]))
for p in res.get("pytest", []):
    print("pytest:", p)
if res.get("bench"):
    print("\n| tokens | plain prefill tok/s | LaMPE prefill tok/s | ratio | plain decode ms | LaMPE decode ms | ratio | at depth prefill ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for b in res["bench"]:
        f = lambda k: b.get(k, float("nan"))
        print(f"| {b['tokens']} | {f('plain_prefill_tok_s'):.0f} | {f('lampe_prefill_tok_s'):.0f} | {f('prefill_ratio'):.2f} | "
              f"{f('plain_decode_ms'):.2f} | {f('lampe_decode_ms'):.2f} | {f('decode_ratio'):.2f} | {f('depth_prefill_ratio'):.2f} |")
PY
say "done in $(( $(date +%s) - T0 ))s"
