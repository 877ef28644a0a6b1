"""Run one ggml op on the CPU from Python: ctypes bindings to the handful of ggml calls a test needs.

Tensors are made in a ggml context that owns their memory, filled from NumPy
arrays, and the graph of the result is computed with ggml_graph_compute_with_ctx,
the way llama.cpp's test-backend-ops drives an op on one backend.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from pylampe._native import LIB_DIR

GGML_TYPE = {"f32": 0, "f16": 1, "q8_0": 8, "i32": 26}
GGML_ROPE_TYPE_NEOX = 2

_base = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
_cpu = ctypes.CDLL(str(LIB_DIR / "libggml-cpu.so"))


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


_p = ctypes.c_void_p
_i64 = ctypes.c_int64

_base.ggml_init.argtypes, _base.ggml_init.restype = [_InitParams], _p
_base.ggml_free.argtypes, _base.ggml_free.restype = [_p], None
_base.ggml_new_tensor_4d.argtypes, _base.ggml_new_tensor_4d.restype = [_p, ctypes.c_int, _i64, _i64, _i64, _i64], _p
_base.ggml_permute.argtypes, _base.ggml_permute.restype = [_p, _p] + [ctypes.c_int] * 4, _p
_base.ggml_get_data.argtypes, _base.ggml_get_data.restype = [_p], _p
_base.ggml_nbytes.argtypes, _base.ggml_nbytes.restype = [_p], ctypes.c_size_t
_base.ggml_new_graph.argtypes, _base.ggml_new_graph.restype = [_p], _p
_base.ggml_build_forward_expand.argtypes, _base.ggml_build_forward_expand.restype = [_p, _p], None
_base.ggml_flash_attn_ext_lampe.argtypes = [_p] * 11 + [ctypes.c_float] + [ctypes.c_int] * 4
_base.ggml_flash_attn_ext_lampe.restype = _p
_cpu.ggml_graph_compute_with_ctx.argtypes, _cpu.ggml_graph_compute_with_ctx.restype = [_p, _p, ctypes.c_int], ctypes.c_int


class Graph:
    """A ggml context: make tensors from arrays, build one op, compute it, read it back."""

    def __init__(self, ctx: int) -> None:
        self.ctx = ctx
        self.lib = _base

    def tensor(self, data: np.ndarray | bytes, type_: str, ne: Sequence[int]) -> int:
        """A tensor of shape ne (ggml order, innermost first) holding data's bytes."""
        ne4 = list(ne) + [1] * (4 - len(ne))
        t = _base.ggml_new_tensor_4d(self.ctx, GGML_TYPE[type_], *ne4)
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        assert len(raw) == _base.ggml_nbytes(t), (len(raw), _base.ggml_nbytes(t))
        ctypes.memmove(_base.ggml_get_data(t), raw, len(raw))
        return t

    def compute(self, out: int, shape: Sequence[int], n_threads: int) -> np.ndarray:
        """Compute out (F32, contiguous) and return it as an array of the given NumPy shape."""
        gf = _base.ggml_new_graph(self.ctx)
        _base.ggml_build_forward_expand(gf, out)
        assert _cpu.ggml_graph_compute_with_ctx(self.ctx, gf, n_threads) == 0
        n = int(np.prod(shape))
        buf = (ctypes.c_float * n).from_address(_base.ggml_get_data(out))
        return np.frombuffer(buf, dtype=np.float32, count=n).reshape(shape).copy()


@contextmanager
def ggml_graph(mem_size: int = 256 << 20) -> Iterator[Graph]:
    ctx = _base.ggml_init(_InitParams(mem_size, None, False))
    assert ctx, "ggml_init failed"
    try:
        yield Graph(ctx)
    finally:
        _base.ggml_free(ctx)
