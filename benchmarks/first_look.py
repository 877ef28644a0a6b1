#!/usr/bin/env python3
"""First look at LaMPE on the embedded SmolLM2-135M (T = 8192): LaMPE on vs off, in one run.

    python benchmarks/first_look.py --tokens 16384 24576 --threads 2 > first_look.jsonl
    python benchmarks/first_look.py --table first_look.jsonl   # the table again, from the records

For each length: the passkey demo's document (5-digit key in the middle,
question at the end), prefill tok/s, greedy answer, decode tok/s over the
answer's tokens. One JSON line per run on stdout, then a Markdown table.
Long (minutes per run on 2 cores): run it in the background.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List

from pylampe import Llama
from pylampe.eval.passkey import passkey_prompt
from pylampe.cli.generate import default_model

N_ANSWER = 8


def run_one(n_tokens: int, lampe: bool, seed: int, threads: int) -> Dict[str, Any]:
    llm = Llama(str(default_model()), n_ctx=n_tokens + 256, n_batch=512, n_ubatch=512,
                n_threads=threads, n_threads_batch=threads, verbose=False, lampe="auto" if lampe else None)
    text, key = passkey_prompt(n_tokens, lambda t: len(llm.tokenize(t.encode(), add_bos=False)), seed)
    tokens = llm.tokenize(text.encode())
    t0 = time.perf_counter()
    answer: List[int] = []
    t1 = 0.0
    for tok in llm.generate(tokens, temp=0.0):
        if not answer:
            t1 = time.perf_counter()  # the prompt is evaluated and the first token sampled
        answer.append(tok)
        if len(answer) == N_ANSWER:
            break
    t2 = time.perf_counter()
    text_out = llm.detokenize(answer).decode(errors="replace")
    record = {"tokens": len(tokens), "lampe": lampe, "key": key, "answer": text_out,
              "correct": key in text_out, "prefill_tok_s": round(len(tokens) / (t1 - t0), 2),
              "decode_tok_s": round((N_ANSWER - 1) / (t2 - t1), 2),
              "state": llm.lampe_state() if lampe else None}
    llm.close()
    return record


def table(rows: List[Dict[str, Any]]) -> str:
    """Markdown: each run, and LaMPE's speed as a fraction of plain attention's at the same length."""
    plain = {r["tokens"]: r for r in rows if not r["lampe"]}
    lines = ["| tokens | attention | answer (key) | prefill tok/s | decode tok/s | prefill, decode vs plain |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        base = plain.get(r["tokens"])
        ratio = (f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, {r['decode_tok_s'] / base['decode_tok_s']:.2f}x"
                 if r["lampe"] and base else "")
        answer = " ".join(r["answer"].split())
        lines.append(f"| {r['tokens']} | {'LaMPE' if r['lampe'] else 'plain RoPE'} | {answer!r} "
                     f"({r['key']}, {'ok' if r['correct'] else 'miss'}) | {r['prefill_tok_s']} | "
                     f"{r['decode_tok_s']} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[16384, 24576], help="prompt lengths")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="picks the pass key")
    parser.add_argument("--table", metavar="JSONL", help="only print the table of earlier records")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table([json.loads(line) for line in f if line.startswith("{")]))
        return 0
    rows = []
    for n in args.tokens:
        for lampe in (False, True):
            rows.append(run_one(n, lampe, args.seed, args.threads))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
