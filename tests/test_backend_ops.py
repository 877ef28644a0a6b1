"""llama.cpp's test-backend-ops on GGML_OP_FLASH_ATTN_EXT_LAMPE: every backend's kernel against the CPU reference.

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


def test_backend_ops() -> None:
    # the package's build, build/<wheel tag> (not scripts/cpu-matrix.sh's build/cpu-*)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-"
    binaries = sorted(ROOT.glob(f"build/{tag}*/bin/test-backend-ops"))
    if not binaries:
        pytest.fail("test-backend-ops is not built: `make install` builds it into build/<wheel tag>/bin")
    run = subprocess.run([str(binaries[-1]), "-b", "CPU", "-o", "FLASH_ATTN_EXT_LAMPE"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+)/(\d+) tests passed", run.stdout)
    assert passed and passed.group(1) == passed.group(2) == str(N_CASES), run.stdout[-4000:]
