"""ggml_flash_attn_ext_lampe, the fused LaMPE attention op, against NumPy on random inputs.

In the style of llama.cpp's test-backend-ops: one op, random operands, every
path of the CPU kernel (tiles scored by GEMM, tiles of a few rows scored by dot
products, a single decoding query whose keys are split across threads),
compared with a float64 NumPy computation of the spec's three regions. The reference sees the very
K/V values the op reads (f16 and q8_0 are rounded first), so the tolerance
only covers float32 arithmetic and can fail: the test also shows that
ignoring the regions misses it by far.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from ggml_graph import GGML_ROPE_TYPE_NEOX, ggml_graph
from kv_storage import hadamard, in_blocks
from reference.lampe_spec import constants, map_pos, region

N_LO = 16  # rows of the rotation table's fine part; small, so that the coarse part is exercised too
TOL = 1e-5  # float32 arithmetic; measured errors are 4e-7 to 1.5e-6
INT32_MIN = -(2**31)


@dataclass(frozen=True)
class Case:
    n_q: int  # queries per stream
    n_kv: int
    n_head: int = 6
    n_head_kv: int = 2
    d: int = 64
    kv: str = "f16"  # K type, and V type unless v is given
    v: str | None = None
    neox: bool = False
    n_rot: int | None = None  # rotary dimensions, default d
    n_stream: int = 1
    W: int = 16
    S: int = 4
    M: int = 24
    exact: bool = False  # L < 2W: one region, every key local
    had: int = 0  # K stored Walsh-Hadamard-rotated in blocks of this size (llama.cpp's quantized K cache)
    threads: int = 2
    holes: float = 0.1  # share of causally visible pairs masked anyway


CASES = {
    # tiles of 8+ rows (queries x the query heads of a KV head): scores by GEMM
    "gemm-gqa": Case(n_q=70, n_kv=200, threads=3),
    "gemm-f32-neox-hd128": Case(n_q=64, n_kv=130, n_head=4, n_head_kv=4, d=128, kv="f32", neox=True),
    "gemm-partial-rotary": Case(n_q=66, n_kv=180, n_rot=32),
    "gemm-short-prompt": Case(n_q=64, n_kv=100, exact=True),
    "gemm-q8_0-hd128": Case(n_q=5, n_kv=300, n_head=4, n_head_kv=1, d=128, kv="q8_0", neox=True),
    "gemm-f16-k-q8_0-v": Case(n_q=64, n_kv=150, v="q8_0"),
    "gemm-two-streams-odd-heads": Case(n_q=20, n_kv=150, n_head=3, n_head_kv=1, n_stream=2),
    # the start span reaches into the local window (r + W > L): there the keys are local, and no key is middle
    "gemm-start-span-in-window": Case(n_q=64, n_kv=90, S=80, M=8),
    # fewer rows (decoding): scores by dot products, keys split across threads
    "dot-two-queries": Case(n_q=2, n_kv=300),
    "dot-decode-split-keys": Case(n_q=1, n_kv=1100, threads=4, M=300),
    "dot-decode-one-thread": Case(n_q=1, n_kv=600, threads=1, M=200),
    "dot-decode-two-streams-q8_0": Case(n_q=1, n_kv=600, kv="q8_0", n_stream=2, M=200),
    "dot-decode-many-kv-heads": Case(n_q=1, n_kv=600, n_head=16, n_head_kv=8, M=200),
    "dot-decode-neox-partial-rotary": Case(n_q=1, n_kv=700, neox=True, n_rot=32, M=150),
    # K as llama.cpp stores it quantized: rotated by an orthonormal Hadamard matrix, which middle keys shed
    "gemm-q8_0-hadamard": Case(n_q=64, n_kv=150, kv="q8_0", had=64),
    "dot-decode-q8_0-hadamard-hd128": Case(n_q=1, n_kv=600, n_head=4, n_head_kv=1, d=128, kv="q8_0", neox=True, had=128, M=200),
}


def rope_pairs(n_rot: int, neox: bool) -> list[tuple[int, int]]:
    half = n_rot // 2
    return [(p, p + half) if neox else (2 * p, 2 * p + 1) for p in range(half)]


def rotation_table(case: Case, n_tab: int) -> tuple[np.ndarray, np.ndarray]:
    """([n_tab, n_rot], the pairs' frequencies): the unit vector of each pair rotated to -u (u < N_LO), then -(u - N_LO)*N_LO."""
    n_rot = case.n_rot or case.d
    theta = 10000.0 ** (-2.0 * np.arange(n_rot // 2) / n_rot)
    table = np.zeros((n_tab, n_rot))
    for u in range(n_tab):
        pos = -u if u < N_LO else -(u - N_LO) * N_LO
        for p, (i0, i1) in enumerate(rope_pairs(n_rot, case.neox)):
            table[u, i0], table[u, i1] = np.cos(pos * theta[p]), np.sin(pos * theta[p])
    return table, theta


def stored(x: np.ndarray, type_: str) -> tuple[np.ndarray, bytes]:
    """(the values the op reads, as float64; the bytes it is given) for rows of x in type_."""
    if type_ == "f32":
        x32 = x.astype(np.float32)
        return x32.astype(np.float64), x32.tobytes()
    if type_ == "f16":
        x16 = x.astype(np.float16)
        return x16.astype(np.float64), x16.tobytes()
    q = quantize(x.astype(np.float32), GGMLQuantizationType.Q8_0)
    return dequantize(q, GGMLQuantizationType.Q8_0).reshape(x.shape).astype(np.float64), q.tobytes()


@dataclass
class Operands:
    q: np.ndarray  # [3, n_stream, n_q, n_head, d] local, start, middle
    k: np.ndarray  # [n_stream, n_kv, n_head_kv, d] as stored
    v: np.ndarray
    k_bytes: bytes
    v_bytes: bytes
    mask: np.ndarray  # [n_stream, n_q, n_kv] 0 or -inf
    k_pos: np.ndarray  # [n_stream, n_kv, 2] position, t
    q_pos: np.ndarray  # [n_stream, n_q, 2] lo, hi
    q_scale: np.ndarray  # [n_stream, n_q]
    positions: np.ndarray  # [n_stream, n_q] query positions
    L: list[int]
    rot: np.ndarray  # [n_tab, n_rot]
    theta: np.ndarray


def operands(case: Case, seed: int) -> Operands:
    rng = np.random.default_rng(seed)
    ns, nq, nkv, d = case.n_stream, case.n_q, case.n_kv, case.d
    q = rng.standard_normal((3, ns, nq, case.n_head, d))
    k_raw = rng.standard_normal((ns, nkv, case.n_head_kv, d))
    k, k_bytes = stored(in_blocks(k_raw, hadamard(case.had)) if case.had else k_raw, case.kv)
    v, v_bytes = stored(rng.standard_normal((ns, nkv, case.n_head_kv, d)), case.v or case.kv)

    mask = np.full((ns, nq, nkv), -np.inf)
    k_pos = np.zeros((ns, nkv, 2), dtype=np.int32)
    q_pos = np.zeros((ns, nq, 2), dtype=np.int32)
    positions = np.zeros((ns, nq), dtype=np.int64)
    L = []
    for s in range(ns):
        n_seq = nkv - 7 * s  # the second stream holds fewer tokens: its last cells stay empty
        L_s = 20 if case.exact else n_seq - (1 if nq == 1 else 0) - 3 * s  # decode: a token generated past L
        L.append(L_s)
        r = constants(L_s, case.W, case.S, case.M).r
        cell_pos = np.full(nkv, -1)
        cell_pos[rng.permutation(nkv)[:n_seq]] = np.arange(n_seq)  # cells in no position order
        for c, p in enumerate(cell_pos):
            t = 0 if p < 0 else p - map_pos(p, L_s, case.M)
            k_pos[s, c] = (p, t)
        positions[s] = np.arange(n_seq - nq, n_seq)
        for i, p1 in enumerate(positions[s]):
            q_pos[s, i] = (INT32_MIN, INT32_MIN) if case.exact else (p1 - case.W, p1 - L_s + r)
            visible = (cell_pos >= 0) & (cell_pos <= p1) & (rng.random(nkv) >= case.holes)
            mask[s, i, visible] = 0.0
    if nq > 1:
        mask[-1, nq // 2] = -np.inf  # a query that sees no key: its output is 0

    n_tab = N_LO + nkv // N_LO + 1
    rot, theta = rotation_table(case, n_tab)
    q_scale = rng.uniform(1.0, 1.3, size=(ns, nq))
    return Operands(q, k, v, k_bytes, v_bytes, mask, k_pos, q_pos, q_scale, positions, L, rot, theta)


def reference(case: Case, o: Operands, scale: float, *, regions: bool = True) -> np.ndarray:
    """[n_stream, n_q, n_head, d]: softmax over the visible keys, each scored in its region."""
    n_rot = case.n_rot or case.d
    out = np.zeros((case.n_stream, case.n_q, case.n_head, case.d))
    for s in range(case.n_stream):
        r = constants(o.L[s], case.W, case.S, case.M).r
        for i in range(case.n_q):
            cells = np.flatnonzero(o.mask[s, i] == 0.0)
            if len(cells) == 0:
                continue
            p1 = int(o.positions[s, i])
            keys = o.k[s, cells].copy()  # [n, n_head_kv, d]
            which = np.zeros(len(cells), dtype=int)
            for n, c in enumerate(cells):
                p0, t = o.k_pos[s, c]
                reg = "local" if case.exact or not regions else region(p1, int(p0), o.L[s], case.W, r)
                which[n] = ("local", "start", "middle").index(reg)
                if reg == "middle":
                    if case.had:  # back to the basis of the rotary pairs
                        keys[n] = in_blocks(keys[n], hadamard(case.had))
                    for pair, (i0, i1) in enumerate(rope_pairs(n_rot, case.neox)):
                        cs, sn = np.cos(-t * o.theta[pair]), np.sin(-t * o.theta[pair])
                        x0, x1 = keys[n, :, i0].copy(), keys[n, :, i1].copy()
                        keys[n, :, i0], keys[n, :, i1] = x0 * cs - x1 * sn, x0 * sn + x1 * cs
            for h in range(case.n_head):
                hk = h // (case.n_head // case.n_head_kv)
                qs = o.q[which, s, i, h]  # [n, d]: each key's query
                logits = scale * o.q_scale[s, i] * np.einsum("nd,nd->n", qs, keys[:, hk])
                w = np.exp(logits - logits.max())
                out[s, i, h] = w @ o.v[s, cells, hk] / w.sum()
    return out


def run_op(case: Case, o: Operands, scale: float) -> np.ndarray:
    ns, nq, nkv, d, nh, nhk = case.n_stream, case.n_q, case.n_kv, case.d, case.n_head, case.n_head_kv
    n_rot = case.n_rot or d
    with ggml_graph() as g:
        lib = g.lib

        def permuted(t: int) -> int:  # [d, heads, rows, ns] -> [d, rows, heads, ns], as llama.cpp's graph
            return lib.ggml_permute(g.ctx, t, 0, 2, 1, 3)

        qs = [permuted(g.tensor(o.q[r].astype(np.float32), "f32", (d, nh, nq, ns))) for r in range(3)]
        k = permuted(g.tensor(o.k_bytes, case.kv, (d, nhk, nkv, ns)))
        v = permuted(g.tensor(o.v_bytes, case.v or case.kv, (d, nhk, nkv, ns)))
        mask = g.tensor(o.mask.astype(np.float16), "f16", (nkv, nq, 1, ns))
        k_pos = g.tensor(o.k_pos, "i32", (2, nkv, ns))
        q_pos = g.tensor(o.q_pos, "i32", (2, nq, ns))
        q_scale = g.tensor(o.q_scale.astype(np.float32), "f32", (nq, ns))
        rot = g.tensor(o.rot.astype(np.float32), "f32", (n_rot, len(o.rot)))
        out = lib.ggml_flash_attn_ext_lampe(
            g.ctx, *qs, k, v, mask, k_pos, q_pos, q_scale, rot, scale, n_rot, GGML_ROPE_TYPE_NEOX if case.neox else 0, N_LO,
            case.had,
        )
        return g.compute(out, (ns, nq, nh, d), case.threads).astype(np.float64)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", CASES)
def test_op_matches_numpy(name: str) -> None:
    case = CASES[name]
    o = operands(case, seed=list(CASES).index(name))
    scale = 1.0 / np.sqrt(case.d)
    got = run_op(case, o, scale)
    assert np.isfinite(got).all()
    assert rel_err(got, reference(case, o, scale)) < TOL
    if not case.exact:
        assert rel_err(got, reference(case, o, scale, regions=False)) > 100 * TOL  # regions change the result
    if case.had:
        shed = reference(replace(case, had=0), o, scale)
        assert rel_err(got, shed) > 100 * TOL  # and so does leaving the Hadamard basis


def test_cases_cover_every_region() -> None:
    """Each multi-grained case has visible pairs in all three regions, so each region's code path runs."""
    for name, case in CASES.items():
        if case.exact:
            continue
        o = operands(case, seed=0)
        seen = set()
        for s in range(case.n_stream):
            r = constants(o.L[s], case.W, case.S, case.M).r
            for i in range(case.n_q):
                for c in np.flatnonzero(o.mask[s, i] == 0.0):
                    seen.add(region(int(o.positions[s, i]), int(o.k_pos[s, c, 0]), o.L[s], case.W, r))
        assert seen == ({"local", "start"} if case.S + case.W > case.n_kv else {"local", "start", "middle"}), name
