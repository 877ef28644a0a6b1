#!/usr/bin/env python3
"""Decode speed of LaMPE against upstream attention on one KV cache, in alternating segments.

    python benchmarks/decode_ab.py --tokens 16384 --reps 6 --segment 16 -t 2 [--cache-type q8_0]

One prompt of random tokens is evaluated once; then decoding steps alternate
between upstream attention (reference length 0: llama.cpp's own graph) and
LaMPE (reference length = the prompt), segment by segment. Both read the same
cache in the same memory, so the ratio is free of what differs between two
processes (where the cache lands, the machine's load at the time), which on a
small VM moves single-process decode timings by 20% or more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from pylampe import Llama, _native  # first: points llama_cpp at pylampe's library
import llama_cpp  # noqa: E402
from pylampe.cache_types import CACHE_TYPES  # noqa: E402
from pylampe.cli.model import default_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF model (default: the SmolLM2 model)")
    ap.add_argument("--tokens", type=int, default=16384, help="prompt tokens in the cache")
    ap.add_argument("--reps", type=int, default=6, help="segments per method")
    ap.add_argument("--segment", type=int, default=16, help="decoding steps per segment")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--cache-type", choices=tuple(CACHE_TYPES), default="f16", help="K and V cache type")
    args = ap.parse_args()

    n = args.tokens
    cache = CACHE_TYPES[args.cache_type]
    llm = Llama(str(args.model or default_model()), n_ctx=n + 2*(args.reps + 1)*args.segment + 64,
                n_threads=args.threads, flash_attn=True, type_k=cache, type_v=cache, verbose=False)
    prompt = np.random.default_rng(0).integers(100, llm.n_vocab(), size=n).tolist()
    t0 = time.perf_counter()
    llm.eval(prompt)
    print(f"prefill of {n} tokens: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    def segment(n_ref: int) -> float:
        """ms per decoding step over one segment."""
        _native.llama_lampe_set_ref(llm._ctx.ctx, 0, n_ref)
        t0 = time.perf_counter()
        for _ in range(args.segment):
            # the base class's eval: pylampe's would set the reference length itself
            llama_cpp.Llama.eval(llm, [prompt[-1]])
        return (time.perf_counter() - t0)/args.segment*1e3

    methods = (("plain", _native.LLAMA_LAMPE_REF_PLAIN), ("lampe", n))
    for _, n_ref in methods:  # warm-up: the first graph of each kind is built and allocated
        segment(n_ref)
    ms = {name: [] for name, _ in methods}
    for _ in range(args.reps):
        for name, n_ref in methods:
            ms[name].append(segment(n_ref))

    print("| method | ms per token, by segment | median |\n|---|---|---|")
    for name, v in ms.items():
        print(f"| {name} | {' '.join(f'{x:.1f}' for x in v)} | {statistics.median(v):.1f} |")
    print(f"\nLaMPE decode speed / plain: {statistics.median(ms['plain'])/statistics.median(ms['lampe']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
