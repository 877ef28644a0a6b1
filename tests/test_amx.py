"""AMX in use and right, where the CPU has it (Sapphire Rapids and later); skipped elsewhere with the reason.

Quantized weights go to ggml-cpu's AMX buffer by default (use_extra_bufts); without it they take the plain
CPU kernels. Both quantize the activations to 8 bits the same way, so the logits agree to rounding: wrong
tile shapes (upstream PR #16315's wrong Q4_0/Q4_1 results) or a rejected config (the GCC 12 crash that
patches/0006 fixes) would not.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import List

import numpy as np
import pytest

from gguf_models import write_tiny_llama
from llama_driver import llama_cpp, run_logits
from pylampe.cli.model import default_model


def cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


pytestmark = pytest.mark.skipif(not {"amx_tile", "amx_int8"} <= cpu_flags(),
                                reason="this CPU has no AMX (amx_tile, amx_int8 in /proc/cpuinfo)")

LOG: List[str] = []


@llama_cpp.llama_log_callback
def _collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    LOG.append(text.decode(errors="replace"))


def logits_and_log(path: Path, tokens: List[int], amx: bool) -> tuple:
    LOG.clear()
    llama_cpp.llama_log_set(_collect, ctypes.c_void_p(0))
    try:
        got = run_logits(path, tokens, use_extra_bufts=amx, n_ctx=256)
    finally:
        from pylampe._native import set_llama_logging
        set_llama_logging(False)
    return got, "".join(LOG)


@pytest.mark.parametrize("weights", ["Q8_0", "Q4_0", "smollm2-Q4_1"])
def test_amx_logits_match_the_plain_cpu_kernels(weights: str, model_dir: Path) -> None:
    if weights.startswith("smollm2"):
        path = default_model()
    else:
        path = write_tiny_llama(model_dir / f"amx-{weights}.gguf", weight_type=weights, n_embd=128, n_ff=256)
    tokens = np.random.default_rng(0).integers(3, 400, 96).tolist()
    amx, log = logits_and_log(path, tokens, amx=True)
    plain, _ = logits_and_log(path, tokens, amx=False)
    assert "AMX" in log, "the AMX weight buffer was not used"
    err = float(np.abs(amx - plain).max() / np.abs(plain).max())
    assert err < 2e-2, f"AMX vs plain CPU kernels: max rel err {err:.2e}"
