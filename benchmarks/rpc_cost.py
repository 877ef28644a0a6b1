#!/usr/bin/env python3
"""What the RPC protocol costs: prefill and decode with the model split across two loopback workers, against
the same model local, in one run, and the bytes that cross per decoded token.

    python benchmarks/rpc_cost.py --tokens 16384 -t 2 -o results/rpc_cost.jsonl

Two `pylampe rpc-server` processes on free loopback ports (one thread each) hold all layers (-ngl 99, split
by their memory: half each); the client keeps the embeddings. Local runs the same prompt (random token ids,
LaMPE on beyond T) with -t threads. Bytes per token are the traffic of the client's connections to the
workers (ss's tcp_info: bytes sent and received) over the decoded tokens. On one machine the workers share
its cores with the client, so this measures the protocol's cost, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from pylampe import Llama  # first: points llama_cpp at pylampe's library
import llama_cpp  # noqa: E402
from pylampe.cli.model import default_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_bytes(ports: List[int]) -> int:
    """Bytes sent and received so far on this machine's TCP connections to the workers (ss's tcp_info)."""
    total = 0
    for port in ports:
        out = subprocess.run(["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        total += sum(int(n) for n in re.findall(r"bytes_(?:sent|received):(\d+)", out))
    return total


def start_worker(port: int) -> subprocess.Popen:
    pylampe = str(Path(sys.executable).with_name("pylampe"))
    proc = subprocess.Popen([pylampe, "rpc-server", "--port", str(port), "-t", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"worker on port {port} did not start")


def last_argmax(llm: Llama) -> int:
    logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return int(np.argmax(np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),))))


def measure(model: str, tokens: List[int], n_gen: int, threads: int, ports: List[int],
            **kwargs: object) -> Dict[str, float]:
    llm = Llama(model, n_ctx=len(tokens) + n_gen + 16, n_threads=threads, n_threads_batch=threads,
                flash_attn=True, verbose=False, **kwargs)
    try:
        t0 = time.perf_counter()
        llm.eval(tokens)
        prefill = time.perf_counter() - t0
        before = tcp_bytes(ports)
        t0 = time.perf_counter()
        token = last_argmax(llm)
        for _ in range(n_gen):
            llm.eval([token])
            token = last_argmax(llm)
        decode = time.perf_counter() - t0
        moved = tcp_bytes(ports) - before
        if len(tokens) > llm._model.n_ctx_train():  # beyond T every ubatch must have had LaMPE
            assert llm.lampe_counters()["exact_beyond_T"] == 0 and llm.lampe_counters()["lampe"] > 0
        return {"prefill_tok_s": len(tokens) / prefill, "decode_tok_s": n_gen / decode,
                "bytes_per_token": moved / n_gen}
    finally:
        llm.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF model (default: the SmolLM2 model)")
    ap.add_argument("--tokens", type=int, default=16384, help="prompt tokens (default: 16384, 2T of SmolLM2)")
    ap.add_argument("--n-gen", type=int, default=16, help="decoded tokens")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-o", "--output", default=None, help="append the JSON record here")
    args = ap.parse_args()

    model = str(args.model or default_model())
    tokens = np.random.default_rng(0).integers(100, 40000, size=args.tokens).tolist()
    local = measure(model, tokens, args.n_gen, args.threads, [])
    ports = [free_port(), free_port()]
    workers = [start_worker(p) for p in ports]
    try:
        remote = measure(model, tokens, args.n_gen, args.threads, ports, n_gpu_layers=99,
                         rpc_servers=[f"127.0.0.1:{p}" for p in ports])
    finally:
        for w in workers:
            w.kill()
    record = {"model": Path(model).name, "tokens": args.tokens, "local": local, "two_workers": remote,
              "prefill_ratio": remote["prefill_tok_s"] / local["prefill_tok_s"],
              "decode_ratio": remote["decode_tok_s"] / local["decode_tok_s"]}
    print(json.dumps(record))
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
