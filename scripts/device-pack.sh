#!/usr/bin/env bash
# Fill .device/ (git-ignored) with what scripts/device-check.sh needs on a GPU machine that has nvcc, CMake,
# ninja and python3 with numpy and pytest, but no network and none of this project's ignored files:
#
#   .device/llama.cpp/   the patched llama.cpp as committed in vendor/llama.cpp (HEAD), pruned to what the
#                        CUDA build of ggml, llama and test-backend-ops reads (about 15 MB)
#   .device/site/        pure-Python packages the tests and benchmarks import that the device lacks:
#                        llama_cpp (llama-cpp-python's bindings), gguf, diskcache; copied from this
#                        project's virtual environment
#   .device/_build_info.py  the installed package's build record (llama.cpp commit, patches)
#   .device/MANIFEST     what was packed, from which commits
#
#   make install && scripts/device-pack.sh     then scripts/device-check.sh's two stages (see there)
#
# Environment: PYTHON (the python that has those packages and pylampe installed) [.venv/bin/python]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLAMA=$ROOT/vendor/llama.cpp
DEV=$ROOT/.device
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || { echo "error: no $PYTHON: run make install (or set PYTHON)" >&2; exit 1; }
[ -d "$LLAMA/.git" ] || { echo "error: $LLAMA is not a git repository (run scripts/vendor.py)" >&2; exit 1; }

if [ -n "$(git -C "$LLAMA" status --porcelain --untracked-files=no)" ]; then
    echo "warning: vendor/llama.cpp has uncommitted changes; packing its HEAD, without them" >&2
fi

rm -rf "$DEV"
mkdir -p "$DEV/llama.cpp" "$DEV/site"

# what the CUDA build reads: top-level CMake, ggml core + CPU + CUDA backends, llama, test-backend-ops
paths=(CMakeLists.txt cmake LICENSE include src tests/test-backend-ops.cpp
       ggml/CMakeLists.txt ggml/cmake ggml/include ggml/src/ggml-cpu ggml/src/ggml-cuda
       vendor/CMakeLists.txt vendor/hash vendor/miniaudio vendor/nlohmann vendor/sheredom vendor/stb)
# ggml/src's own files (not the other backends' directories)
while IFS= read -r f; do
    paths+=("$f")
done < <(git -C "$LLAMA" ls-tree --name-only HEAD ggml/src/ | grep -vE '^ggml/src/ggml-[a-z0-9-]+$' || true)
git -C "$LLAMA" archive --format=tar HEAD -- "${paths[@]}" | tar -x -C "$DEV/llama.cpp"
# the HIP and MUSA builds reuse ggml-cuda; the CMake of the CUDA backend needs nothing else
# llama.cpp's CMake reads the commit for its build info when it is a git checkout: record it instead
git -C "$LLAMA" rev-parse HEAD > "$DEV/llama.cpp/COMMIT"

for pkg in llama_cpp gguf diskcache; do
    dir=$("$PYTHON" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('$pkg').origin))")
    cp -r "$dir" "$DEV/site/$pkg"
done
# the installed package's build record (commit, patches); device-check.sh sets its BACKENDS
(cd / && "$PYTHON" -c "import importlib.util, os, shutil; d = os.path.dirname(importlib.util.find_spec('pylampe').origin); \
shutil.copy(os.path.join(d, '_build_info.py'), '$DEV/_build_info.py')") \
    || { echo "error: pylampe is not installed in $PYTHON's environment: run make install" >&2; exit 1; }
find "$DEV/site" -name __pycache__ -type d -prune -exec rm -rf {} +
# llama_cpp's own native library directory, if any, would shadow pylampe's: drop it
rm -rf "$DEV/site/llama_cpp/lib"

{
    echo "packed:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "project:   $(git -C "$ROOT" rev-parse HEAD) $(git -C "$ROOT" status --porcelain | grep -q . && echo '(dirty)')"
    echo "llama.cpp: $(git -C "$LLAMA" rev-parse HEAD) $(git -C "$LLAMA" log -1 --format=%s)"
    for pkg in llama_cpp gguf diskcache; do
        echo "python:    $pkg $("$PYTHON" -c "import importlib.metadata as m; print(m.version('${pkg/_/-}'.replace('llama-cpp', 'llama-cpp-python')))" 2>/dev/null || echo '?')"
    done
} > "$DEV/MANIFEST"

cat "$DEV/MANIFEST"
du -sh "$DEV" "$DEV/llama.cpp" "$DEV/site"
size_kb=$(du -sk "$DEV" | cut -f1)
[ "$size_kb" -lt $((48*1024)) ] || { echo "error: .device is ${size_kb} KB, too close to the 64 MiB the device run carries" >&2; exit 1; }
