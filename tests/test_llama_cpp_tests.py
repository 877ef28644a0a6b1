"""llama.cpp's own tests that run on a CPU without downloads, built from the patched tree
(scripts/llama-tests.sh says which and why)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_TESTS = 11  # test-rope, -quantize-fns, -batch-alloc, -sampling, three grammar tests, four tokenizer vocabularies


def test_llama_cpp_tests() -> None:
    run = subprocess.run([str(ROOT / "scripts" / "llama-tests.sh")], capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = re.search(r"(\d+)% tests passed(?:, (\d+) tests failed)? out of (\d+)", run.stdout)
    assert summary and summary.group(1) == "100" and int(summary.group(3)) == N_TESTS, run.stdout[-3000:]
