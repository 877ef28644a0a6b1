#!/usr/bin/env bash
# The LaMPE CUDA kernels on a lent GPU machine, in two stages that each fit one device call.
#
# Here, once (the device has no network and none of the git-ignored files):
#   make install && scripts/device-pack.sh             fills .device/ (about 20 MB)
# Then, with the device tool, back to back on the same (warm) machine:
#   run(command="bash scripts/device-check.sh 1", carry=[".device"], timeout_s=450)   stage 1, <= 7 min
#   run(command="bash scripts/device-check.sh 2", carry=[".device"], timeout_s=390)   stage 2, <= 6 min
#   give_back()
# A stage 1 cut short by its limit is run again: the build folder stays on the warm machine and ninja goes on
# where it stopped.
#
# Stage 1                                                                   limit   estimate (16 cores, sm_90)
#   build      ggml-cuda, llama, test-backend-ops for this GPU only,     300 s   4-5 min
#              into .device-build/ (git-ignored, kept between calls);
#              the bench model is written meanwhile, in the background
#   op         test-backend-ops -o FLASH_ATTN_EXT_LAMPE on CUDA0 against   60 s   20 s (28 cases x 3 kernels)
#              the CPU, each kernel choice (auto, vec, simt)
#   sanitizer  compute-sanitizer memcheck, racecheck, synccheck on two     90 s   40 s
#              small cases of each kernel
# Stage 2 (stops at once unless stage 1's summary says ok)
#   ref        tests/test_cuda_lampe.py, tests/test_lampe_reference.py,    150 s   60 s
#              every layer on the GPU; tolerances widened by plain
#              attention's own GPU error (tests/gpu_tolerance.py)
#   bench      benchmarks/gpu_long_ab.py on a random Llama-3-8B-shape    100 s   60 s
#              Q4_0 model: plain flash attention vs LaMPE at 32K,
#              then 128K if time is left                                 100 s   80 s
#
# Each stage writes $OUT/stageN.json after every step (so a timeout still returns what finished), its logs
# under $OUT, and a copy of the summary in .device-build/ for the next stage.
#
# DEVICE_CHECK_DRY=1 runs both stages on a machine without a GPU, in a few minutes: the package's CPU build
# (build/<wheel tag>) stands in for the CUDA build, the op cases run on the CPU backend, the sanitizer's case
# selections run without the sanitizer, the reference tests run with PYLAMPE_TEST_N_GPU_LAYERS set, and the
# bench uses a tiny model. It checks every path, tool and file name the device run uses, except CUDA itself
# (scripts/build-cuda.sh --check-only compiles the kernels).
#
# Environment: OUT [.device-out], DEVICE_CHECK_BUILD [.device-build], DEVICE_CHECK_ARCH [nvidia-smi's], DEVICE_CHECK_DRY, DEVICE_CHECK_FORCE (stage
#   2 without an ok stage 1), DEVICE_CHECK_LENGTHS [32768,131072; dry: 1024].
set -uo pipefail

STAGE=${1:-}
[[ "$STAGE" == 1 || "$STAGE" == 2 ]] || { echo "usage: $0 1|2" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$(date +%s)
BUDGET=$([ "$STAGE" = 1 ] && echo 420 || echo 360)
DEADLINE=$((T0 + BUDGET))
DRY=${DEVICE_CHECK_DRY:-}
OUT=${OUT:-$ROOT/.device-out}
DEV=$ROOT/.device
BUILD=${DEVICE_CHECK_BUILD:-$ROOT/.device-build}
PY=$BUILD/py                      # pylampe's Python sources plus the built libraries, first on PYTHONPATH
TBO=$BUILD/bin/test-backend-ops
NPROC=$(nproc 2>/dev/null || echo 8)
SHAPE=$([ -n "$DRY" ] && echo tiny || echo llama3-8b)
MODEL=$BUILD/$SHAPE-shape-q4_0.gguf
mkdir -p "$OUT" "$BUILD"
LOG=$OUT/stage$STAGE.log
STEPS=$OUT/stage$STAGE.tsv
: > "$LOG"
: > "$STEPS"

say() { echo "[stage $STAGE, $(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# the stage's JSON summary from the steps so far: stage N is ok when every step is ok (or "unsupported")
summarize() {
    python3 - "$STEPS" "$OUT" "$STAGE" "${DRY:+dry}" <<'PY'
import json, os, re, sys
steps_tsv, out, stage, dry = sys.argv[1:5]
steps = []
for line in open(steps_tsv):
    name, status, secs, detail = line.rstrip("\n").split("\t")
    steps.append({"step": name, "status": status, "seconds": int(secs), "detail": detail})
res = {"stage": int(stage), "dry_run": bool(dry), "steps": steps,
       "ok": bool(steps) and all(s["status"] in ("ok", "unsupported") for s in steps)}
def read(name):
    p = os.path.join(out, name)
    return open(p, errors="replace").read() if os.path.exists(p) else ""
if stage == "1":
    res["op_cases"] = re.findall(r"== kernel (\w+)[\s\S]*?(\d+)/(\d+) tests passed", read("op.log"))
    res["sanitizer"] = re.findall(r"== (\w+) kernel=(\w+): (.*)", read("sanitizer.log"))
else:
    res["pytest"] = re.findall(r"^=* ?(\d+ (?:passed|failed|error).*? in [0-9.]+s)", read("ref.log"), re.M)
    res["logit_errors"] = re.findall(r"^\s*([0-9.e+-]+)\s{2}(.+)$", read("ref.log").split("max |a - b|")[-1], re.M)
    bench = os.path.join(out, "bench.jsonl")
    if os.path.exists(bench):
        res["bench"] = [json.loads(l) for l in open(bench) if l.strip()]
json.dump(res, open(os.path.join(out, f"stage{stage}.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k != "bench"}, indent=None)[:3000])
for b in res.get("bench", []):
    f = lambda k: b.get(k, float("nan"))
    print(f"bench {b['tokens']}: prefill plain {f('plain_prefill_tok_s'):.0f} tok/s, LaMPE/plain {f('prefill_ratio'):.2f}; "
          f"decode plain {f('plain_decode_ms'):.2f} ms, LaMPE/plain {f('decode_ratio'):.2f}; LaMPE path {b.get('fused_op')}")
PY
    cp "$OUT/stage$STAGE.json" "$BUILD/stage$STAGE.json"
}

# step NAME LIMIT_S CMD...: CMD (a function or program) with at most LIMIT_S seconds, less if the stage's
# budget is short; its output goes to $OUT/NAME.log. A CMD that prints "UNSUPPORTED: why" as its last line
# and exits 3 is recorded as unsupported (a tool the machine lacks), not failed.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - $(date +%s) - 15))
    if [ "$left" -lt 20 ]; then
        say "$name: skipped, ${left}s left"
        printf '%s\tskipped\t0\tno time left\n' "$name" >> "$STEPS"
        summarize > /dev/null
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name: start (limit ${limit}s)"
    : > "$OUT/$name.log"
    local s=$(date +%s)
    timeout -k 10 "$limit" bash -c '"$@"' step "$@" >> "$OUT/$name.log" 2>&1
    local rc=$? dt=$(( $(date +%s) - s )) status=ok detail="rc 0"
    if [ "$rc" -eq 3 ] && tail -n 1 "$OUT/$name.log" | grep -q '^UNSUPPORTED:'; then
        status=unsupported detail=$(tail -n 1 "$OUT/$name.log" | cut -c 14- | tr '\t' ' ')
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        status=timeout detail="rc $rc after ${dt}s"
    elif [ "$rc" -ne 0 ]; then
        status=failed detail="rc $rc"
    fi
    say "$name: $status ($detail, ${dt}s)"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$detail" >> "$STEPS"
    summarize > /dev/null
    [ "$status" = ok ] || [ "$status" = unsupported ]
}

finish() {
    summarize | tee -a "$LOG"
    say "done"
    python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUT/stage$STAGE.json'))['ok'] else 1)"
    exit $?
}

{
    echo "== machine"
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 2
    nvcc --version 2>&1 | tail -n 1
    compute-sanitizer --version 2>&1 | head -n 2
    cmake --version 2>&1 | head -n 1
    echo "ninja $(ninja --version 2>&1); $(python3 --version 2>&1); cores: $NPROC"
    cat "$DEV/MANIFEST" 2>&1
} >> "$LOG" 2>&1
[ -d "$DEV/llama.cpp" ] && [ -d "$DEV/site" ] || {
    say "error: .device is missing: run scripts/device-pack.sh here first, and carry .device"
    exit 1
}
export ROOT OUT DEV BUILD PY TBO NPROC DRY MODEL SHAPE
export PYTHONPATH="$PY:$DEV/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
[ -f "$BUILD/libdirs" ] && while IFS= read -r d; do
    [ -n "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done < "$BUILD/libdirs"

# ---------------------------------------------------------------------------------------------------------------
# stage 1

# the CMake project around the packed tree (the repository's own expects vendor/llama.cpp, which does not travel)
configure() {
    local arch=$1 proj=$BUILD/project
    mkdir -p "$proj"
    cat > "$proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.21)
project(pylampe_device C CXX)
set(BUILD_SHARED_LIBS ON)
foreach(opt LLAMA_BUILD_COMMON LLAMA_BUILD_TESTS LLAMA_BUILD_TOOLS LLAMA_BUILD_EXAMPLES LLAMA_BUILD_SERVER LLAMA_CURL LLAMA_OPENSSL)
    set(\${opt} OFF CACHE BOOL "" FORCE)
endforeach()
add_subdirectory($DEV/llama.cpp llama.cpp EXCLUDE_FROM_ALL)
add_executable(test-backend-ops $DEV/llama.cpp/tests/test-backend-ops.cpp)
target_link_libraries(test-backend-ops PRIVATE ggml)
target_compile_features(test-backend-ops PRIVATE cxx_std_17)
set_target_properties(test-backend-ops PROPERTIES RUNTIME_OUTPUT_DIRECTORY \${CMAKE_BINARY_DIR}/bin)
foreach(target llama ggml ggml-base ggml-cpu ggml-cuda)
    set_target_properties(\${target} PROPERTIES INSTALL_RPATH "\$ORIGIN" BUILD_WITH_INSTALL_RPATH TRUE)
endforeach()
EOF
    local common=(-S "$proj" -B "$BUILD/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON
                  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=ON)
    [ -f "$BUILD/cmake/build.ninja" ] && return 0
    cmake "${common[@]}" && return 0
    # no cuBLAS (or driver stub) in the toolkit: cuBLAS from python's nvidia packages, the legacy memory pool
    echo "== configure failed: retrying with cuBLAS from python's nvidia packages and GGML_CUDA_NO_VMM"
    local cu
    cu=$(python3 -c "
import glob, os, sys
for p in sys.path:
    for lib in glob.glob(os.path.join(p, 'nvidia', 'cu*', 'lib', 'libcublas.so.*')) + glob.glob(os.path.join(p, 'nvidia', 'cublas', 'lib', 'libcublas.so.*')):
        print(os.path.dirname(os.path.dirname(lib))); sys.exit(0)")
    [ -n "$cu" ] || { echo "no cuBLAS found"; return 1; }
    mkdir -p "$BUILD/cublas"
    for l in cublas cublasLt; do ln -sfn "$(ls "$cu"/lib/lib$l.so.* | head -n 1)" "$BUILD/cublas/lib$l.so"; done
    echo "$cu/lib" > "$BUILD/libdirs.extra"
    rm -rf "$BUILD/cmake/CMakeCache.txt" "$BUILD/cmake/CMakeFiles"
    cmake "${common[@]}" -DGGML_CUDA_NO_VMM=ON \
        -DCUDA_cublas_LIBRARY="$BUILD/cublas/libcublas.so" -DCUDA_cublasLt_LIBRARY="$BUILD/cublas/libcublasLt.so" \
        -DCMAKE_CUDA_FLAGS="-isystem $cu/include" -DCMAKE_CXX_FLAGS="-isystem $cu/include"
}

# pylampe's sources with the built libraries in pylampe/lib (it loads them from there), outside the checkout's
# own pylampe/ so that nothing built here can end up in a wheel; python3 -P keeps the checkout's pylampe/ (the
# working directory) off sys.path
stage_python() {
    local lib=$1
    rm -rf "$PY" && mkdir -p "$PY"
    cp -r "$ROOT/pylampe" "$PY/pylampe"
    rm -rf "$PY/pylampe/lib" && mkdir -p "$PY/pylampe/lib"
    cp -L "$lib"/lib*.so* "$PY/pylampe/lib/"
    sed "s/^BACKENDS = .*/BACKENDS = $([ -n "$DRY" ] && echo "('cpu',)" || echo "('cpu', 'cuda')")/" "$DEV/_build_info.py" \
        > "$PY/pylampe/_build_info.py"
    python3 -P -c "import pylampe, pylampe._native; print('pylampe from', pylampe.__file__)"
}

build() {
    if [ -n "$DRY" ]; then
        # no GPU here: the package's CPU build (make install) stands in for the CUDA build
        local pkg
        pkg=$(ls -d "$ROOT"/build/cp3*-*/bin 2>/dev/null | head -n 1)
        [ -x "$pkg/test-backend-ops" ] || { echo "no package build in build/<wheel tag>: run make install"; return 1; }
        mkdir -p "$BUILD/bin" && cp -L "$pkg"/test-backend-ops "$pkg"/lib*.so* "$BUILD/bin/"
        : > "$BUILD/libdirs"
    else
        configure "$ARCH" || return 1
        # where the CUDA runtime and cuBLAS are, for the loader (the libraries' run path is only \$ORIGIN)
        sed -n -e 's/^CUDAToolkit_LIBRARY_DIR:[A-Z]*=//p' -e 's/^CUDA_cudart_LIBRARY:[A-Z]*=\(.*\)\/[^/]*$/\1/p' \
            "$BUILD/cmake/CMakeCache.txt" | sort -u > "$BUILD/libdirs"
        cat "$BUILD/libdirs.extra" >> "$BUILD/libdirs" 2>/dev/null
        ninja -C "$BUILD/cmake" -j "$NPROC" ggml-cuda llama test-backend-ops || return 1
        mkdir -p "$BUILD/bin" && cp -L "$BUILD"/cmake/bin/test-backend-ops "$BUILD"/cmake/bin/lib*.so* "$BUILD/bin/"
    fi
    while IFS= read -r d; do [ -n "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done < "$BUILD/libdirs"
    stage_python "$BUILD/bin"
}

BACKEND=$([ -n "$DRY" ] && echo CPU || echo CUDA0)

op_cases() {
    local rc=0
    for kernel in auto vec simt; do
        echo "== kernel $kernel"
        GGML_CUDA_LAMPE_KERNEL=$([ "$kernel" = auto ] || echo $kernel) "$TBO" -b "$BACKEND" -o FLASH_ATTN_EXT_LAMPE || rc=1
        [ -n "$DRY" ] && break # the kernel choice is CUDA's
    done
    return $rc
}

# two small cases per kernel: decoding (vec: 1 and 2 queries) and prefill tiles (64 and 70 rows)
SANITIZER_CASES='^(hs=64,nh=2,nr=3,kv=300,nb=2,|hs=32,nh=2,nr=3,kv=300,nb=1,|hs=64,nh=2,nr=3,kv=200,nb=70,ns=1,type_K=f16,|hs=96,nh=2,nr=2,kv=300,nb=64,)'

sanitizer() {
    local tool kernel rc=0 out
    local wrap=(compute-sanitizer --error-exitcode 1 --print-limit 20)
    if [ -n "$DRY" ]; then
        wrap=()
    elif ! command -v compute-sanitizer > /dev/null; then
        echo "UNSUPPORTED: compute-sanitizer is not on the PATH"
        return 3
    fi
    for tool in memcheck racecheck synccheck; do
        for kernel in auto simt; do
            out=$(GGML_CUDA_LAMPE_KERNEL=$([ "$kernel" = auto ] || echo $kernel) \
                  "${wrap[@]}" ${wrap:+--tool $tool} "$TBO" -b "$BACKEND" -o FLASH_ATTN_EXT_LAMPE -p "$SANITIZER_CASES" 2>&1)
            local r=$?
            echo "$out" | grep -v "^  FLASH_ATTN_EXT_LAMPE" | tail -n 30
            if echo "$out" | grep -q "Device not supported\|Target application terminated before first instrumented API call"; then
                echo "UNSUPPORTED: compute-sanitizer cannot instrument this device"
                return 3
            fi
            local cases
            cases=$(echo "$out" | sed -n 's/.* \([0-9]*\/[0-9]*\) tests passed.*/\1/p' | head -n 1)
            # 4 cases selected and passed, and the sanitizer's own verdict
            if [ "$r" -ne 0 ] || [ "$cases" != "4/4" ]; then
                rc=1
                echo "== $tool kernel=$kernel: FAILED (rc $r, cases ${cases:-none})"
            else
                echo "== $tool kernel=$kernel: ok (cases $cases$(echo "$out" | grep -o 'ERROR SUMMARY: [0-9]* errors*' | head -n 1 | sed 's/^/, /'))"
            fi
            [ -n "$DRY" ] && return $rc # one pass shows the selection and the command line work
        done
    done
    return $rc
}

export BACKEND SANITIZER_CASES
export -f configure stage_python build op_cases sanitizer

if [ "$STAGE" = 1 ]; then
    ARCH=${DEVICE_CHECK_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')}
    [ -n "$DRY" ] && ARCH=${ARCH:-none}
    [ -n "$ARCH" ] || { say "error: no GPU (nvidia-smi gives no compute capability) and no DEVICE_CHECK_ARCH"; exit 1; }
    export ARCH
    say "sm_$ARCH; dry run: ${DRY:-no}"
    rm -f "$BUILD/stage1.json" "$BUILD/stage2.json"
    # the bench model (I/O, mostly) while the build runs; stage 2 waits for it or writes it
    if [ ! -f "$MODEL" ]; then
        (timeout $((BUDGET - 60)) python3 benchmarks/random_gguf.py --shape "$SHAPE" --out "$MODEL.part" > "$OUT/model.log" 2>&1 \
            && mv "$MODEL.part" "$MODEL") &
    fi
    step build 300 build && step op 60 op_cases && step sanitizer 90 sanitizer
    wait
    finish
fi

# ---------------------------------------------------------------------------------------------------------------
# stage 2

if ! python3 -c "import json,sys; sys.exit(0 if json.load(open('$BUILD/stage1.json'))['ok'] else 1)" 2>/dev/null; then
    if [ -z "${DEVICE_CHECK_FORCE:-}" ]; then
        say "stage 1 did not succeed on this machine ($BUILD/stage1.json): run stage 1 (again) first"
        cat "$BUILD/stage1.json" 2>/dev/null | tee -a "$LOG"
        exit 1
    fi
    say "stage 1 did not succeed; going on (DEVICE_CHECK_FORCE)"
fi

ref_tests() {
    PYLAMPE_TEST_N_GPU_LAYERS=999 python3 -P -m pytest -q -p no:cacheprovider tests/test_cuda_lampe.py \
        tests/test_lampe_reference.py
}

bench() {
    local n=$1 extra=()
    [ -f "$MODEL" ] || python3 benchmarks/random_gguf.py --shape "$SHAPE" --out "$MODEL" || return 1
    [ -n "$DRY" ] && extra=(-t 2 --segment 2 --reps 2 --chunk 128 --chunk-reps 1)
    python3 benchmarks/gpu_long_ab.py -m "$MODEL" --tokens "$n" --json "$OUT/bench.jsonl" -ngl 999 "${extra[@]}"
}
export -f ref_tests bench

rm -f "$OUT/bench.jsonl"
step ref 150 ref_tests
for n in $(echo "${DEVICE_CHECK_LENGTHS:-$([ -n "$DRY" ] && echo 1024 || echo 32768,131072)}" | tr ',' ' '); do
    step "bench-$n" 100 bench "$n" || break
done
finish
