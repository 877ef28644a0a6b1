#!/usr/bin/env python3
"""ggml_flash_attn_ext_lampe against upstream attention (flash attention, and without it: mul_mat, soft_max,
mul_mat on a transposed V), op alone, same shapes and threads.

    python benchmarks/op_speed.py --kv 16384 --queries 1 512 --threads 2

Shapes default to SmolLM2-135M's attention (9 query heads, 3 KV heads,
head size 64, F16 K/V; --kv-type q8_0 --hadamard 64 for a quantized cache); the LaMPE operands are those of a sequence of
--kv tokens with W = 1024, S = 200 and M from the default sigmoid, so most
keys are in the middle region. Prints the median ms per call over --runs and the ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ggml_graph import GGML_ROPE_TYPE_NEOX, _base, _cpu, ggml_graph  # noqa: E402

_base.ggml_flash_attn_ext.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_float] * 3
_base.ggml_flash_attn_ext.restype = ctypes.c_void_p
_base.ggml_new_graph.restype = ctypes.c_void_p
_base.ggml_mul_mat.argtypes = [ctypes.c_void_p] * 3
_base.ggml_mul_mat.restype = ctypes.c_void_p
_base.ggml_soft_max_ext.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_float] * 2
_base.ggml_soft_max_ext.restype = ctypes.c_void_p


METHODS = ("plain", "plain-fa-off", "lampe")


def run(args: argparse.Namespace, n_q: int) -> list[float]:
    rng = np.random.default_rng(0)
    d, nh, nhk, nkv = args.head_size, args.heads, args.kv_heads, args.kv
    W, S, L = 1024, 200, nkv
    M = int(0.75 * 8192 / (1 + np.exp(-(5.96 / 8192 * L - 4.86))))
    n_lo = 128
    with ggml_graph(3 << 30) as g:
        lib = g.lib
        perm = lambda t: lib.ggml_permute(g.ctx, t, 0, 2, 1, 3)  # noqa: E731
        qs = [perm(g.tensor(rng.standard_normal((n_q, nh, d)).astype(np.float32), "f32", (d, nh, n_q)))
              for _ in range(3)]
        # K and V of every layer apart, as in a model: nothing stays in cache from one call to the next
        kv = rng.standard_normal((nkv, nhk, d)).astype(np.float32)
        kv = quantize(kv, GGMLQuantizationType.Q8_0).tobytes() if args.kv_type == "q8_0" else kv.astype(np.float16)
        ks = [perm(g.tensor(kv, args.kv_type, (d, nhk, nkv))) for _ in range(args.repeat)]
        vs = [perm(g.tensor(kv, args.kv_type, (d, nhk, nkv))) for _ in range(args.repeat)]
        # flash attention off: llama.cpp stores V transposed, [n_kv, head size, KV heads]
        v_trans = np.ascontiguousarray(np.asarray(kv if args.kv_type == "f16" else np.zeros(0)).reshape(nkv, nhk, d)
                                       .transpose(1, 2, 0)) if args.kv_type == "f16" else None
        vts = [g.tensor(v_trans, "f16", (nkv, d, nhk)) for _ in range(args.repeat)] if v_trans is not None else []
        pos_q = np.arange(L - n_q, L)
        mask = np.where(np.arange(nkv)[None, :] <= pos_q[:, None], 0.0, -np.inf).astype(np.float16)
        m = g.tensor(mask, "f16", (nkv, n_q))
        p = np.arange(nkv)
        k_pos = g.tensor(np.stack([p, p - p * M // (L - 1)], 1).astype(np.int32), "i32", (2, nkv))
        q_pos = g.tensor(np.stack([pos_q - W, pos_q - L + S], 1).astype(np.int32), "i32", (2, n_q))
        q_scale = g.tensor(np.ones(n_q, np.float32), "f32", (n_q,))
        n_tab = n_lo + nkv // n_lo + 1
        rot = g.tensor(np.tile(np.array([1.0, 0.0], np.float32), (n_tab, d // 2)), "f32", (d, n_tab))
        scale = 1 / np.sqrt(d)
        ops = {
            "plain": lambda i: lib.ggml_flash_attn_ext(g.ctx, qs[0], ks[i], vs[i], m, scale, 0.0, 0.0),
            "plain-fa-off": lambda i: lib.ggml_mul_mat(g.ctx, vts[i], lib.ggml_soft_max_ext(
                g.ctx, lib.ggml_mul_mat(g.ctx, ks[i], qs[0]), m, scale, 0.0)),
            "lampe": lambda i: lib.ggml_flash_attn_ext_lampe(g.ctx, *qs, ks[i], vs[i], m, k_pos, q_pos, q_scale,
                                                             rot, scale, d, 0, n_lo, args.hadamard),
        }
        graphs = {}
        for name in METHODS:
            if name == "plain-fa-off" and not vts:  # llama.cpp needs flash attention for a quantized V
                continue
            # one graph of --repeat independent nodes, like the layers of a model: one thread start per graph
            gf = lib.ggml_new_graph(g.ctx)
            for i in range(args.repeat):
                lib.ggml_build_forward_expand(gf, ops[name](i))
            _cpu.ggml_graph_compute_with_ctx(g.ctx, gf, args.threads)  # warm-up
            graphs[name] = gf
        # the methods take turns, run after run, so that a change in the machine's load reaches all of them
        runs: dict[str, list[float]] = {name: [] for name in graphs}
        for _ in range(args.runs):
            for name, gf in graphs.items():
                t0 = time.perf_counter()
                _cpu.ggml_graph_compute_with_ctx(g.ctx, gf, args.threads)
                runs[name].append((time.perf_counter() - t0) / args.repeat * 1e3)
        times = [statistics.median(runs[name]) if name in runs else float("nan") for name in METHODS]
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kv", type=int, default=16384, help="keys (tokens in the cache)")
    ap.add_argument("--queries", type=int, nargs="+", default=[1, 512], help="queries per call")
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--head-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-type", choices=("f16", "q8_0"), default="f16", help="K and V type (default: f16)")
    ap.add_argument("--hadamard", type=int, default=0, metavar="N",
                    help="K stored Hadamard-rotated in blocks of N, as llama.cpp stores quantized K (default: 0)")
    ap.add_argument("--repeat", type=int, default=30, help="op calls per graph (layers)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per method, taking turns; the median is shown")
    args = ap.parse_args()
    print("| queries | keys | plain FA ms | plain FA-off ms | LaMPE ms | LaMPE / best plain time |\n|---|---|---|---|---|---|")
    for n_q in args.queries:
        plain, plain_off, lampe = run(args, n_q)
        best = min(t for t in (plain, plain_off) if t == t)
        print(f"| {n_q} | {args.kv} | {plain:.2f} | {plain_off:.2f} | {lampe:.2f} | {lampe / best:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
