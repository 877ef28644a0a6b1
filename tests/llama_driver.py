"""Drive our patched llama.cpp through llama-cpp-python's low-level API.

Everything test code needs to run tokens through a model and read back all
logits: load a model, make a context, decode in batches of a chosen size.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

KvType = Literal["f32", "f16", "q8_0"]

# new_context's flash attention unless a call says: a test module switches it to run every case through both
# LaMPE paths (flash attention on: ggml_flash_attn_ext_lampe, off: ggml ops)
FLASH_ATTN = False
_GGML_TYPE = {"f32": 0, "f16": 1, "q8_0": 8}  # GGML_TYPE_F32, _F16, _Q8_0

# layers offloaded when a call does not say: PYLAMPE_TEST_N_GPU_LAYERS=999 runs every model of the tests on the GPU
# of a CUDA build (scripts/device-check.sh), so that the fused LaMPE op runs through its CUDA kernels
N_GPU_LAYERS = int(os.environ.get("PYLAMPE_TEST_N_GPU_LAYERS", "0"))


def import_llama_cpp() -> ModuleType:
    """llama_cpp bound to pylampe's build of llama.cpp (pylampe._native sets it up)."""
    import pylampe._native  # noqa: F401  (points llama_cpp at our library before its import)
    import llama_cpp

    return llama_cpp


llama_cpp = import_llama_cpp()
llama_cpp.llama_backend_init()


@contextmanager
def loaded_model(path: str | Path, *, n_gpu_layers: int | None = None, use_extra_bufts: bool = True) -> Iterator[Any]:
    """use_extra_bufts=False keeps the weights out of the CPU's repacking buffers (AMX, ...)."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = N_GPU_LAYERS if n_gpu_layers is None else n_gpu_layers
    params.use_extra_bufts = use_extra_bufts
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    try:
        yield model
    finally:
        llama_cpp.llama_model_free(model)


@contextmanager
def new_context(
    model: Any,
    *,
    n_ctx: int = 256,
    n_batch: int = 256,
    n_ubatch: int = 256,
    kv_type: KvType = "f32",
    flash_attn: bool | None = None,
    n_threads: int = 4,
    n_seq_max: int = 1,
    kv_unified: bool = False,
) -> Iterator[Any]:
    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = n_seq_max
    params.kv_unified = kv_unified
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_ubatch
    params.type_k = params.type_v = _GGML_TYPE[kv_type]
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if (FLASH_ATTN if flash_attn is None else flash_attn)
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.n_threads = params.n_threads_batch = n_threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    try:
        yield ctx
    finally:
        llama_cpp.llama_free(ctx)


def n_vocab(model: Any) -> int:
    return llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))


def decode(ctx: Any, tokens: list[int], *, batch_size: int, pos0: int = 0, seq_id: int = 0) -> np.ndarray:
    """Decode tokens at positions pos0.. in batches of batch_size; logits [n, n_vocab]."""
    vocab = n_vocab(llama_cpp.llama_get_model(ctx))
    out = np.empty((len(tokens), vocab), dtype=np.float32)
    batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
    try:
        for start in range(0, len(tokens), batch_size):
            chunk = tokens[start : start + batch_size]
            batch.n_tokens = len(chunk)
            for k, tok in enumerate(chunk):
                batch.token[k] = tok
                batch.pos[k] = pos0 + start + k
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq_id
                batch.logits[k] = True
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            for k in range(len(chunk)):
                ptr = llama_cpp.llama_get_logits_ith(ctx, k)
                out[start + k] = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (vocab,))
    finally:
        llama_cpp.llama_batch_free(batch)
    return out


def run_logits(
    path: str | Path,
    tokens: list[int],
    *,
    batch_size: int | None = None,
    n_gpu_layers: int | None = None,
    use_extra_bufts: bool = True,
    **ctx_params: Any,
) -> np.ndarray:
    """One-shot: load path, evaluate tokens in one sequence from position 0, return all logits."""
    batch_size = batch_size or len(tokens)
    ctx_params.setdefault("n_ctx", max(256, len(tokens)))
    ctx_params.setdefault("n_batch", max(batch_size, 1))
    ctx_params.setdefault("n_ubatch", ctx_params["n_batch"])
    with loaded_model(path, n_gpu_layers=n_gpu_layers, use_extra_bufts=use_extra_bufts) as model, \
            new_context(model, **ctx_params) as ctx:
        return decode(ctx, tokens, batch_size=batch_size)


def enable_lampe(ctx: Any, *, W: int, S: int, M: int, s: float) -> None:
    """Enable LaMPE with a fixed mapping length M on ctx."""
    from pylampe import _native

    params = _native.llama_lampe_default_params()
    params.n_window, params.n_start, params.n_map, params.attn_factor = W, S, M, s
    rc = _native.llama_lampe_enable(ctx, params)
    if rc != 0:
        raise RuntimeError(f"llama_lampe_enable returned {rc}")


def set_lampe_ref(ctx: Any, L: int, seq_id: int = 0) -> None:
    from pylampe import _native

    rc = _native.llama_lampe_set_ref(ctx, seq_id, L)
    if rc != 0:
        raise RuntimeError(f"llama_lampe_set_ref returned {rc}")
