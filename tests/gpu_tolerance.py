"""Tolerances that mean the same on a GPU as on the CPU.

On a GPU, plain attention itself differs from the float64 reference by about 1e-3: ggml-cuda runs cuBLAS with
TF32, small F32 batches go through TF32 tensor cores, and its flash attention converts F32 K/V to F16. None of
that can be turned off from outside. So where layers are offloaded (PYLAMPE_TEST_N_GPU_LAYERS), a LaMPE case
passes within PLAIN_MULTIPLE times plain attention's own difference, measured in the same run on the same
model, KV type, batch and prompt, plus the LaMPE path's own tolerance. On the CPU plain's difference is ~1e-6
and the tolerances are the strict ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import llama_driver
from conftest import LOGIT_ERRORS
from reference.model import Reference

PLAIN_MULTIPLE = 3.0


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def offloaded() -> bool:
    return llama_driver.N_GPU_LAYERS > 0


def widen(op_tol: float, plain_err: float, label: str) -> float:
    """op_tol plus PLAIN_MULTIPLE x plain attention's difference; recorded for the run's summary."""
    LOGIT_ERRORS[f"plain attention, {label}"] = max(plain_err, LOGIT_ERRORS.get(f"plain attention, {label}", 0.0))
    return op_tol + PLAIN_MULTIPLE * plain_err


def plain_logits(path: Path, tokens: list[int], *, batch: int, kv: str, flash_attn: bool | None = None) -> np.ndarray:
    """llama.cpp's logits with LaMPE off, on the same layers and context settings as the LaMPE runs."""
    with llama_driver.loaded_model(path) as model, llama_driver.new_context(
            model, n_ctx=max(256, len(tokens)), n_batch=batch, n_ubatch=batch, kv_type=kv,
            flash_attn=flash_attn) as ctx:
        return llama_driver.decode(ctx, tokens, batch_size=batch)


def against_reference(op_tol: float, path: Path, reference: Reference, tokens: list[int], *,
                      batch: int, kv: str = "f32") -> float:
    """The tolerance for LaMPE against the float64 reference: op_tol, widened on a GPU by plain attention's
    difference from the same reference on the same prompt."""
    if not offloaded():
        return op_tol
    err = rel_err(plain_logits(path, tokens, batch=batch, kv=kv), reference.logits(tokens))
    return widen(op_tol, err, f"{kv}, GPU vs reference")
