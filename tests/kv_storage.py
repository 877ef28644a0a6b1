"""What llama.cpp's KV cache and matrix products do to K, V and Q, for the NumPy reference.

A cached row is rounded to the cache type (F32, F16) or quantized block by
block; a quantized K (or V) whose head size is a multiple of 64 is first
multiplied by an orthonormal Walsh-Hadamard matrix, which the queries (or
the attention output) undo. So the key attention effectively sees is
H . dequantize(quantize(H . k)), and likewise for V.

ggml's CPU matrix products (attention composed of ops, flash attention off)
also convert their second operand to the first's dot-product type: the
queries to F16 against F16 keys, to Q8_0 or Q8_1 against quantized ones (in
the Hadamard basis, for a rotated K), the attention weights to F16 against an
F16 V. LaMPE's fused op reads K and V as F32 and keeps the queries in F32.

Quantization uses the CPU backend's own row quantizer (the one that writes
the cache), dequantization the gguf package's independent NumPy code.
Quantization is not what the tests check; the point is that the reference
reads the values llama.cpp computes with, so that a tolerance can be tight
enough to catch a wrong position or rotation.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from pylampe._native import LIB_DIR

QUANTIZED = {
    "q8_0": GGMLQuantizationType.Q8_0,
    "q5_1": GGMLQuantizationType.Q5_1,
    "q5_0": GGMLQuantizationType.Q5_0,
    "q4_1": GGMLQuantizationType.Q4_1,
    "q4_0": GGMLQuantizationType.Q4_0,
    "iq4_nl": GGMLQuantizationType.IQ4_NL,
}
BLOCK = 32  # every quantized cache type above has blocks of 32 values

_ggml = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
_ggml.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
_ggml.ggml_row_size.restype = ctypes.c_size_t
_ggml_cpu = ctypes.CDLL(str(LIB_DIR / "libggml-cpu.so"))
_ggml_cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
_FromFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraitsCpu(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


_ggml_cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_TypeTraitsCpu)

_GGML_TYPE = {"f32": 0, "f16": 1, "q8_1": 9, **{name: int(q) for name, q in QUANTIZED.items()}}
_GGML_NAME = {v: k for k, v in _GGML_TYPE.items()}


def dot_type(type_: str) -> str:
    """What ggml's CPU matrix product converts the other operand to, against a first operand of type_."""
    return _GGML_NAME[_ggml_cpu.ggml_get_type_traits_cpu(_GGML_TYPE[type_]).contents.vec_dot_type]


def hadamard(n: int) -> np.ndarray:
    """The orthonormal Walsh-Hadamard matrix of size n (Sylvester's construction): symmetric, its own inverse."""
    h = np.ones((1, 1))
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def in_blocks(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x's last axis multiplied by m block by block."""
    n = len(m)
    return (x.reshape(*x.shape[:-1], -1, n) @ m.T).reshape(x.shape)


def _round_trip(x: np.ndarray, type_: str) -> np.ndarray:
    """x [..., row] as ggml stores and returns it in type_."""
    if type_ == "f32":
        return x.astype(np.float32).astype(np.float64)
    if type_ == "f16":
        return x.astype(np.float16).astype(np.float64)
    qtype = _GGML_TYPE[type_]
    rows = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
    n_rows, n_per_row = rows.shape
    row_size = _ggml.ggml_row_size(qtype, n_per_row)
    buf = np.zeros(n_rows * row_size, dtype=np.uint8)
    from_float = _FromFloat(_ggml_cpu.ggml_get_type_traits_cpu(qtype).contents.from_float)
    for i in range(n_rows):  # row by row, as ggml_set_rows writes the cache
        from_float(rows[i].ctypes.data, buf.ctypes.data + i * row_size, n_per_row)
    if type_ == "q8_1":  # blocks of (f16 d, f16 sum, 32 x int8): values d*q; gguf has no Q8_1
        blocks = buf.reshape(-1, 36)
        d = blocks[:, :2].copy().view(np.float16).astype(np.float64)
        return (d * blocks[:, 4:].view(np.int8)).reshape(x.shape)
    return dequantize(buf.reshape(n_rows, row_size), QUANTIZED[type_]).reshape(x.shape).astype(np.float64)


@dataclass(frozen=True)
class KvStorage:
    """The cache types of K and V, the Hadamard block sizes llama.cpp uses with them (0: none), and whether
    attention multiplies with ggml's CPU matrix products (which convert queries and weights, see above)."""

    type_k: str = "f32"
    type_v: str = "f32"
    had_k: int = 0
    had_v: int = 0
    mul_mat: bool = False

    @classmethod
    def llama_cpp(cls, type_k: str, type_v: str, head_dim: int, *, mul_mat: bool = False,
                  rot_disabled: bool = False) -> "KvStorage":
        """As llama_kv_cache sets it up: Hadamard K and V when quantized with head sizes of a multiple of 64.

        K takes the largest power of 2 that divides the head size, V always 64 (llama-kv-cache.cpp).
        """
        had_k = had_v = 0
        if not rot_disabled and head_dim % 64 == 0:
            if type_k in QUANTIZED:
                had_k = 64
                while head_dim % (2 * had_k) == 0:
                    had_k *= 2
            if type_v in QUANTIZED:
                had_v = 64
        return cls(type_k, type_v, had_k, had_v, mul_mat)

    def k(self, x: np.ndarray) -> np.ndarray:
        """Keys [n, n_head_kv, head_dim], rotated at their exact positions, as attention reads them."""
        return self._store(x, self.type_k, self.had_k)

    def v(self, x: np.ndarray) -> np.ndarray:
        return self._store(x, self.type_v, self.had_v)

    def q(self, x: np.ndarray) -> np.ndarray:
        """Queries [n, n_head, head_dim] as they meet the cached keys (not the F32 middle-region keys)."""
        return self._store(x, dot_type(self.type_k), self.had_k) if self.mul_mat else x

    def weights(self, w: np.ndarray) -> np.ndarray:
        """Attention weights [..., n_kv] as they meet the cached values."""
        return _round_trip(w, dot_type(self.type_v)) if self.mul_mat else w

    @staticmethod
    def _store(x: np.ndarray, type_: str, had: int) -> np.ndarray:
        # a row holds every head of a token: quantization blocks never straddle two heads (head_dim % 32 == 0)
        n = x.shape[0]
        if not had:
            return _round_trip(x.reshape(n, -1), type_).reshape(x.shape)
        h = hadamard(had)
        return in_blocks(_round_trip(in_blocks(x, h).reshape(n, -1), type_).reshape(x.shape), h)
