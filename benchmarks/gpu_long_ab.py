#!/usr/bin/env python3
"""Prefill and decode speed of LaMPE against plain flash attention at one long length, in one process.

    python benchmarks/gpu_long_ab.py -m model.gguf --tokens 32768 -ngl 999 --json results.jsonl

On one context (flash attention on, F16 KV cache, LaMPE enabled with the model's defaults):

1. plain prefill: N random tokens with reference length 0 (llama.cpp's own attention graph), timed;
2. decode: segments alternating plain (reference length 0) and LaMPE (reference length N) on that cache,
   ms per token, medians over the segments (both read the same cache in the same memory);
3. prefill at depth: the last --chunk tokens removed and evaluated again, alternating LaMPE and plain;
4. up to --full-max tokens: the whole prompt again with LaMPE from an empty cache, timed.

The KV cache holds keys at their exact positions for both methods, so one plain prefill serves both. Prints
one JSON line (appended to --json) with the numbers and whether LaMPE ran as the fused op on the device the
layers are on (llama.cpp's probe at the first graph).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time

import numpy as np

from pylampe import _native  # first: points llama_cpp at pylampe's library
import llama_cpp  # noqa: E402
from pylampe.config import LampeConfig  # noqa: E402

# plain RoPE at every length in the same context: the baseline (llama-ext.h, llama_lampe_set_ref)
PLAIN = _native.LLAMA_LAMPE_REF_PLAIN

LOG: list[str] = []


@llama_cpp.llama_log_callback
def _log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", "replace")
    LOG.append(line)
    if level in (3, 4) or "LaMPE" in line or "fused" in line:  # warnings, errors and the probe's verdicts
        print(line, end="", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--tokens", type=int, default=32768, help="prompt tokens N in the cache")
    ap.add_argument("-ngl", "--n-gpu-layers", type=int, default=999)
    ap.add_argument("--batch", type=int, default=2048, help="n_batch")
    ap.add_argument("--ubatch", type=int, default=512, help="n_ubatch")
    ap.add_argument("--segment", type=int, default=4, help="decoding steps per segment")
    ap.add_argument("--reps", type=int, default=4, help="segments per method (decoding)")
    ap.add_argument("--chunk", type=int, default=2048, help="tokens re-evaluated at depth")
    ap.add_argument("--chunk-reps", type=int, default=3)
    ap.add_argument("--full-max", type=int, default=32768, help="largest N prefilled whole with LaMPE too")
    ap.add_argument("-t", "--threads", type=int, default=8)
    ap.add_argument("--json", default=None, help="append the result here")
    args = ap.parse_args()

    llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()

    n = args.tokens
    res: dict = {"tokens": n, "model": args.model, "n_gpu_layers": args.n_gpu_layers, "n_ubatch": args.ubatch}

    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = args.n_gpu_layers
    t0 = time.perf_counter()
    model = llama_cpp.llama_model_load_from_file(args.model.encode(), mp)
    if not model:
        raise SystemExit(f"cannot load {args.model}")
    res["load_s"] = time.perf_counter() - t0
    T = llama_cpp.llama_model_n_ctx_train(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))

    extra = 2 * args.reps * args.segment + 2 * args.segment + 64
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = (n + extra + 255) // 256 * 256
    cp.n_batch = args.batch
    cp.n_ubatch = args.ubatch
    cp.n_seq_max = 1
    cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    cp.type_k = cp.type_v = 1  # F16
    cp.n_threads = cp.n_threads_batch = args.threads
    cp.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("cannot create the context")
    config = LampeConfig.for_model(T)
    rc = _native.llama_lampe_enable(ctx, config.to_params())
    if rc != 0:
        raise SystemExit(f"llama_lampe_enable returned {rc}")
    res["lampe"] = {"T": T, "W": config.window, "S": config.start}
    mem = llama_cpp.llama_get_memory(ctx)

    nb = args.batch
    batch = llama_cpp.llama_batch_init(nb, 0, 1)
    tok = np.ctypeslib.as_array(batch.token, (nb,))
    pos = np.ctypeslib.as_array(batch.pos, (nb,))
    nsq = np.ctypeslib.as_array(batch.n_seq_id, (nb,))
    lgt = np.ctypeslib.as_array(batch.logits, (nb,))
    nsq[:] = 1
    for k in range(nb):
        batch.seq_id[k][0] = 0

    def decode(tokens: np.ndarray, pos0: int) -> float:
        """Evaluate tokens at positions pos0.. in chunks of n_batch; seconds, device work included."""
        t0 = time.perf_counter()
        for s in range(0, len(tokens), nb):
            c = tokens[s:s + nb]
            batch.n_tokens = len(c)
            tok[:len(c)] = c
            pos[:len(c)] = np.arange(pos0 + s, pos0 + s + len(c))
            lgt[:len(c)] = 0
            lgt[len(c) - 1] = 1
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} at position {pos0 + s}")
        llama_cpp.llama_synchronize(ctx)
        return time.perf_counter() - t0

    def set_ref(n_ref: int) -> None:
        if _native.llama_lampe_set_ref(ctx, 0, n_ref) != 0:
            raise RuntimeError(f"llama_lampe_set_ref({n_ref}) failed")

    def remove_from(p0: int) -> None:
        llama_cpp.llama_memory_seq_rm(mem, 0, p0, -1)

    prompt = np.random.default_rng(0).integers(100, n_vocab, size=n).astype(np.int32)

    # warm-up: the first graph of each kind is built and its buffers allocated (the first also runs llama.cpp's
    # probe of the fused LaMPE op)
    w = prompt[:min(nb, n)]
    for n_ref in (PLAIN, n):
        set_ref(n_ref)
        decode(w, 0)
        llama_cpp.llama_memory_clear(mem, True)

    # 1. plain prefill
    set_ref(PLAIN)
    dt = decode(prompt, 0)
    res["plain_prefill_s"] = dt
    res["plain_prefill_tok_s"] = n / dt
    print(f"plain prefill of {n} tokens: {dt:.2f} s, {n / dt:.0f} tok/s", file=sys.stderr, flush=True)

    # 2. decoding, alternating segments
    last = int(prompt[-1])
    p = n

    def segment(n_ref: int) -> float:
        nonlocal p
        set_ref(n_ref)
        t0 = time.perf_counter()
        for _ in range(args.segment):
            decode(np.array([last], dtype=np.int32), p)
            p += 1
        return (time.perf_counter() - t0) / args.segment * 1e3

    methods = (("plain", PLAIN), ("lampe", n))
    for _, n_ref in methods:  # warm-up: the first graph of each kind is built and allocated
        segment(n_ref)
    ms: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(args.reps):
        for name, n_ref in methods:
            ms[name].append(segment(n_ref))
    res["plain_decode_ms"] = statistics.median(ms["plain"])
    res["lampe_decode_ms"] = statistics.median(ms["lampe"])
    res["decode_ms_segments"] = ms
    res["decode_ratio"] = res["plain_decode_ms"] / res["lampe_decode_ms"]
    print(f"decode ms/token: plain {res['plain_decode_ms']:.2f}, LaMPE {res['lampe_decode_ms']:.2f}",
          file=sys.stderr, flush=True)
    st = _native.llama_lampe_get_state(ctx, 0)
    res["lampe_state"] = {"L": st.n_ref, "M": st.n_map, "W": st.n_window, "S": st.n_start,
                          "multi_grained": bool(st.multi_grained)}
    remove_from(n)

    # 3. prefill at depth: the last chunk again, alternating
    c = min(args.chunk, n // 2)
    depth = {"lampe": [], "plain": []}
    for _ in range(args.chunk_reps):
        for name, n_ref in (("lampe", n), ("plain", PLAIN)):
            remove_from(n - c)
            set_ref(n_ref)
            depth[name].append(c / decode(prompt[n - c:], n - c))
    res["depth_chunk"] = c
    res["plain_depth_tok_s"] = statistics.median(depth["plain"])
    res["lampe_depth_tok_s"] = statistics.median(depth["lampe"])
    res["depth_prefill_ratio"] = res["lampe_depth_tok_s"] / res["plain_depth_tok_s"]
    print(f"prefill of the last {c} tokens: plain {res['plain_depth_tok_s']:.0f} tok/s, "
          f"LaMPE {res['lampe_depth_tok_s']:.0f} tok/s", file=sys.stderr, flush=True)

    # 4. the whole prompt with LaMPE
    if n <= args.full_max:
        llama_cpp.llama_memory_clear(mem, True)
        set_ref(n)
        dt = decode(prompt, 0)
        res["lampe_prefill_s"] = dt
        res["lampe_prefill_tok_s"] = n / dt
        res["prefill_ratio"] = res["lampe_prefill_tok_s"] / res["plain_prefill_tok_s"]
        print(f"LaMPE prefill of {n} tokens: {dt:.2f} s, {n / dt:.0f} tok/s", file=sys.stderr, flush=True)

    # how LaMPE ran: llama.cpp's probe logs the fused op enabled, or disabled with the device that lacks it
    verdict = [line.strip() for line in LOG if "LaMPE flash attention" in line]
    res["fused_op_log"] = verdict
    res["fused_op"] = ("fused" if any(line.endswith("enabled") for line in verdict)
                       else "composition" if verdict else "unknown")

    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)

    print(json.dumps(res))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    print(f"\n| N | plain prefill tok/s | LaMPE prefill tok/s | plain decode ms | LaMPE decode ms | decode ratio | "
          f"prefill at depth ratio | LaMPE path |\n|---|---|---|---|---|---|---|---|\n"
          f"| {n} | {res['plain_prefill_tok_s']:.0f} | {res.get('lampe_prefill_tok_s', float('nan')):.0f} | "
          f"{res['plain_decode_ms']:.2f} | {res['lampe_decode_ms']:.2f} | {res['decode_ratio']:.2f} | "
          f"{res['depth_prefill_ratio']:.2f} | {res['fused_op']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
