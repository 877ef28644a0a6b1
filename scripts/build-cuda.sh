#!/usr/bin/env bash
# Compile-check the CUDA variant of pylampe's llama.cpp build (GGML_CUDA=ON) on a
# machine that has nvcc but neither a GPU nor a full CUDA toolkit.
#
# Why cuBLAS comes from PyPI here: the CUDA 13.0 toolkit on our dev/CI machines
# is the pip-wheel subset (nvcc, cudart, cccl, ...) unpacked into
# /usr/local/cuda-13.0; it has no cuBLAS, and the only package registries we can
# reach are PyPI and Debian (whose CUDA is 11.x/12.x, not 13). So CMake fails with
#   Target "ggml-cuda" links to: CUDA::cublas but the target was not found.
# NVIDIA publishes cuBLAS on PyPI as `nvidia-cublas` (headers in
# nvidia/cu13/include, libcublas.so.13 + libcublasLt.so.13 in nvidia/cu13/lib);
# we install that wheel (no deps) into a cache dir outside the repo, add the
# unversioned .so symlinks the linker needs, and hand the paths to
# FindCUDAToolkit through its cache variables.
#
# The toolkit has no libcuda.so either (the driver library, normally
# lib/stubs/libcuda.so; no PyPI wheel ships it), and ggml-cuda links
# CUDA::cuda_driver for its VMM memory pool. We generate a link-only stub
# from the toolkit's own cuda.h: one empty function per driver API entry point,
# SONAME libcuda.so.1. It lives in a directory named stubs/, so FindCUDAToolkit
# treats it as a stub (IMPORTED_IMPLIB, no RPATH); at run time the real driver's
# libcuda.so.1 is loaded instead. Never put the stub on a loader path.
#
# Idempotent: re-running only (re)does what is missing or out of date, then
# re-configures and lets ninja/ccache rebuild what changed.
#
# Usage:
#   scripts/build-cuda.sh                 configure and build everything for CUDA_ARCH
#   scripts/build-cuda.sh --check-only    compile only the LaMPE CUDA kernels (fattn-lampe.cu) and
#                                         ggml-cuda.cu (their dispatch and supports_op), one build dir per
#                                         arch in CUDA_ARCHS; fails on any compiler warning in those files
#
# Environment overrides (defaults in brackets):
#   CUDA_HOME       CUDA toolkit root             [/usr/local/cuda-13.0]
#   CUDA_ARCH       CMAKE_CUDA_ARCHITECTURES      [90]
#   CUDA_ARCHS      archs for --check-only        ["80 86 89 90"]
#   BUILD_DIR       build directory               [<repo>/build/cuda-sm$CUDA_ARCH]
#   CUDA_DEPS_DIR   cache dir for cuBLAS + stub   [/opt/cublas13]
#   CUBLAS_VERSION  nvidia-cublas wheel version   [13.0.2.14, the 13.0.x for nvcc 13.0]
#   JOBS            parallel build jobs           [1]
#   NICE            nice level for the build      [19]
#   PYTHON          python with pip               [python3]
set -euo pipefail

CHECK_ONLY=0
case "${1:-}" in
    --check-only) CHECK_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--check-only]" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-13.0}
CUDA_ARCH=${CUDA_ARCH:-90}
BUILD_DIR=${BUILD_DIR:-$ROOT/build/cuda-sm$CUDA_ARCH}
CUDA_DEPS_DIR=${CUDA_DEPS_DIR:-/opt/cublas13}
CUBLAS_VERSION=${CUBLAS_VERSION:-13.0.2.14}
JOBS=${JOBS:-1}
NICE=${NICE:-19}
PYTHON=${PYTHON:-python3}

NVCC=$CUDA_HOME/bin/nvcc
CUDA_INC=$CUDA_HOME/targets/x86_64-linux/include
CUBLAS_ROOT=$CUDA_DEPS_DIR/nvidia/cu13
STUB_DIR=$CUDA_DEPS_DIR/stubs

[ -x "$NVCC" ] || { echo "error: $NVCC not found (set CUDA_HOME)" >&2; exit 1; }
"$NVCC" --version | tail -n 2

# 1. cuBLAS from PyPI, into the cache dir (skipped when already there).
if [ ! -d "$CUDA_DEPS_DIR/nvidia_cublas-$CUBLAS_VERSION.dist-info" ] ||
   [ ! -f "$CUBLAS_ROOT/lib/libcublas.so.13" ] ||
   [ ! -f "$CUBLAS_ROOT/include/cublas_v2.h" ]; then
    echo "== installing nvidia-cublas==$CUBLAS_VERSION into $CUDA_DEPS_DIR"
    mkdir -p "$CUDA_DEPS_DIR"
    rm -rf "$CUDA_DEPS_DIR"/nvidia_cublas-*.dist-info "$CUBLAS_ROOT/lib"/libcublas* "$CUBLAS_ROOT/lib"/libnvblas*
    "$PYTHON" -m pip install --disable-pip-version-check --no-deps --upgrade \
        --target "$CUDA_DEPS_DIR" "nvidia-cublas==$CUBLAS_VERSION"
fi
for lib in cublas cublasLt; do
    ln -sfn "lib$lib.so.13" "$CUBLAS_ROOT/lib/lib$lib.so"
done

# 2. Link-only libcuda.so stub generated from cuda.h (rebuilt if cuda.h is newer).
if [ ! -f "$STUB_DIR/libcuda.so" ] || [ "$CUDA_INC/cuda.h" -nt "$STUB_DIR/libcuda.so" ]; then
    echo "== generating link-only libcuda.so stub in $STUB_DIR"
    mkdir -p "$STUB_DIR"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Preprocess so that cuda.h's API-version macros (cuMemAlloc -> cuMemAlloc_v2, ...)
    # give the symbol names that compiled code really references.
    echo '#include <cuda.h>' | gcc -E -P -x c -I"$CUDA_INC" - \
        | grep -oE '\bCUresult +cu[A-Za-z0-9_]+ *\(' \
        | sed -E 's/^CUresult +//; s/ *\($//' | sort -u \
        | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$tmp/libcuda_stub.c"
    [ "$(wc -l < "$tmp/libcuda_stub.c")" -gt 100 ] || { echo "error: stub generation found too few symbols" >&2; exit 1; }
    gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$tmp/libcuda.so" "$tmp/libcuda_stub.c"
    mv "$tmp/libcuda.so" "$STUB_DIR/libcuda.so"
fi

# 3. Configure (a function: --check-only configures one build dir per arch).
configure() {  # configure BUILD_DIR CUDA_ARCH
    local build_dir=$1 arch=$2
    # A cache made with another CUDA compiler path makes CMake wipe it and
    # re-run *without* our -D options, so start that one afresh.
    if [ -f "$build_dir/CMakeCache.txt" ] &&
       ! grep -qx "CMAKE_CUDA_COMPILER:[A-Z]*=$NVCC" "$build_dir/CMakeCache.txt"; then
        echo "== $build_dir was configured with another CUDA compiler: removing its CMake cache"
        rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
    fi
    cmake -S "$ROOT" -B "$build_dir" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        -DCMAKE_CUDA_COMPILER="$NVCC" \
        -DCUDAToolkit_ROOT="$CUDA_HOME" \
        -DCUDA_cublas_LIBRARY="$CUBLAS_ROOT/lib/libcublas.so" \
        -DCUDA_cublasLt_LIBRARY="$CUBLAS_ROOT/lib/libcublasLt.so" \
        -DCUDA_cuda_driver_LIBRARY="$STUB_DIR/libcuda.so" \
        -DCMAKE_CUDA_FLAGS="-isystem $CUBLAS_ROOT/include" >/dev/null
}

if [ "$CHECK_ONLY" = 1 ]; then
    # The object files of the LaMPE kernels and of ggml-cuda.cu, for each arch; their compiler output is
    # kept in <build>/lampe-check.log and any warning in them fails the check.
    CUDA_ARCHS=${CUDA_ARCHS:-"80 86 89 90"}
    obj_dir=llama.cpp/ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir
    status=0
    for arch in $CUDA_ARCHS; do
        build_dir=$ROOT/build/cuda-check-sm$arch
        echo "== sm_$arch: configuring $build_dir"
        configure "$build_dir" "$arch"
        targets="$obj_dir/fattn-lampe.cu.o $obj_dir/ggml-cuda.cu.o"
        start=$(date +%s)
        if ! nice -n "$NICE" ninja -C "$build_dir" -j "$JOBS" $targets > "$build_dir/lampe-check.log" 2>&1; then
            echo "== sm_$arch: FAILED to compile (see $build_dir/lampe-check.log)"
            tail -n 40 "$build_dir/lampe-check.log"
            status=1
            continue
        fi
        if grep -nE "warning|remark" "$build_dir/lampe-check.log" | grep -E "fattn-lampe|ggml-cuda\.cu"; then
            echo "== sm_$arch: warnings in the LaMPE kernels or their dispatch"
            status=1
        fi
        echo "== sm_$arch: fattn-lampe.cu.o and ggml-cuda.cu.o compiled in $(( $(date +%s) - start )) s"
        # registers, spills and shared memory of each LaMPE kernel (ptxas -v), into lampe-resources.log
        cmd=$(ninja -C "$build_dir" -t commands "$obj_dir/fattn-lampe.cu.o" | tail -n 1 |
              sed -e 's|^[^ ]*ccache ||' -e 's| -MD -MT [^ ]* -MF [^ ]*||' -e 's| -o [^ ]*fattn-lampe.cu.o| -o /dev/null|')
        (cd "$build_dir" && eval "nice -n $NICE $cmd -Xptxas -v") > "$build_dir/lampe-resources.log" 2>&1 || true
        awk '/Compiling entry function .*lampe/ { match($0, /_Z[0-9]+lampe_[a-z]+(I[^ ]*E)?/); name = substr($0, RSTART, RLENGTH) }
             name != "" && /stack frame/ { frame = $1 " B stack, " $5 " B spills" }
             name != "" && /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); printf "   %-44s %s, %s\n", name, substr($0, RSTART + 5, RLENGTH - 5), frame; name = "" }' \
            "$build_dir/lampe-resources.log"

    done
    exit $status
fi

configure "$BUILD_DIR" "$CUDA_ARCH"

# 4. Build (one niced job by default: the build shares the machine with tests).
start=$(date +%s)
nice -n "$NICE" cmake --build "$BUILD_DIR" -j "$JOBS"
echo "== build finished in $(( $(date +%s) - start )) s"
find "$BUILD_DIR" -maxdepth 3 -name 'lib*.so*' -type f -printf '%s\t%p\n' | sort -k2
