"""The LaMPE CUDA kernels run on the CPU by tests/cuda_emu against the op's reference implementation.

Opt-in (PYLAMPE_CUDA_EMU=1): it compiles ggml-base, ggml-cpu and the emulation (minutes on a small machine),
so the default test run and CI skip it. scripts/cuda-emu-check.sh runs the same thing by hand.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.environ.get("PYLAMPE_CUDA_EMU") != "1",
                                reason="set PYLAMPE_CUDA_EMU=1 to run the CUDA kernels' CPU emulation")


def test_cuda_kernels_in_emulation() -> None:
    run = subprocess.run([str(ROOT / "scripts" / "cuda-emu-check.sh")], capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " passed" in run.stdout.splitlines()[-1]
