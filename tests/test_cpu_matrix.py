"""The LaMPE op's test-backend-ops cases, and flash attention's decoding ones, on the CPUs this machine is not: an AVX2-only x86-64 build (run
natively) and an ARM64 build (cross-compiled, run under qemu-aarch64), by scripts/cpu-matrix.sh.

The cross compiler and qemu come from Debian (.ci/run installs them); without them the ARM64 case skips
here with the reason, and fails in CI.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_backend_ops import N_CASES

ROOT = Path(__file__).resolve().parent.parent


def run_matrix(target: str) -> None:
    run = subprocess.run([str(ROOT / "scripts" / "cpu-matrix.sh"), target], capture_output=True, text=True,
                         timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(rf"cpu-matrix: {target}: {N_CASES}/{N_CASES} op cases passed", run.stdout), run.stdout
    decode = re.search(rf"cpu-matrix: {target}: (\d+)/(\d+) flash-attention decode cases passed", run.stdout)
    assert decode and decode.group(1) == decode.group(2) and int(decode.group(1)) > 100, run.stdout


def cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine() != "x86_64" or not cpu_has("avx2"), reason="needs an x86-64 CPU with AVX2")
def test_avx2_only_build() -> None:
    run_matrix("avx2")


def test_aarch64_build_under_qemu() -> None:
    missing = [t for t in ("aarch64-linux-gnu-g++", "qemu-aarch64") if shutil.which(t) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} missing: apt-get install g++-aarch64-linux-gnu qemu-user")
    run_matrix("aarch64")
