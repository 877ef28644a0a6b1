"""llama.cpp's test-backend-ops on the ops this project's patches change, every CPU kernel path against the CPU
reference (use_ref): GGML_OP_FLASH_ATTN_EXT_LAMPE, and GGML_OP_FLASH_ATTN_EXT's decoding cases (patches/0008
decodes by tiles of keys; 0009 scores LaMPE's decoding tiles with the same kernel).

Here, with only the CPU, the CPU's kernel paths are compared with its reference
implementation (use_ref); a GPU build runs the same cases on its device
(scripts/device-check.sh). The binary is built with the package (CMakeLists.txt).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
N_CASES = 28  # the op's cases in test-backend-ops.cpp (patches/0001)


def run_cases(*args: str) -> tuple[int, int]:
    """test-backend-ops -b CPU ARGS: (passed, total); fails the test on a failed case."""
    # the package's build, build/<wheel tag> (not scripts/cpu-matrix.sh's build/cpu-*)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-"
    binaries = sorted(ROOT.glob(f"build/{tag}*/bin/test-backend-ops"))
    if not binaries:
        pytest.fail("test-backend-ops is not built: `make install` builds it into build/<wheel tag>/bin")
    run = subprocess.run([str(binaries[-1]), "-b", "CPU", *args], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+)/(\d+) tests passed", run.stdout)
    assert passed and passed.group(1) == passed.group(2), run.stdout[-4000:]
    return int(passed.group(1)), int(passed.group(2))


def test_lampe_op() -> None:
    assert run_cases("-o", "FLASH_ATTN_EXT_LAMPE") == (N_CASES, N_CASES)


def test_flash_attn_decode() -> None:
    """One query (nb=1): with 512 keys or more the tiled split-KV path, f16, f32 and quantized caches, sinks,
    ALiBi, softcap, GQA; fewer keys the per-row path."""
    passed, _ = run_cases("-o", "FLASH_ATTN_EXT", "-p", "nb=1,")
    assert passed > 1000
