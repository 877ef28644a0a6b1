"""Two users alternating between two long documents on one ``pylampe serve``.

Starts ``pylampe serve`` (the embedded model, a fresh --doc-cache) and sends
chat requests "DOCUMENT\\n\\nQUESTION" alternating between two documents of
about N tokens each (consecutive stretches of --haystack): A, B, A, B, ...
The first request of each document reads it; every later one switches the
model's KV cache to the other document. Prints each request's wall time and
how its document got into the KV cache (/extras/lampe), and appends JSON
records to --output.

    .venv/bin/python benchmarks/doc_switch.py --tokens 8192 --requests 6 -t 2 \\
        --haystack ../shared/data/leval_sci_fi.jsonl -o results/doc_cache.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pylampe  # noqa: E402,F401  (first: it points llama_cpp at its library)
import llama_cpp  # noqa: E402
from pylampe.cli.model import default_model  # noqa: E402
from pylampe.eval.haystack import load_haystack  # noqa: E402
from server_process import ServerProcess  # noqa: E402

QUESTION = "Who is the main character of this text? Answer in one sentence."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192, help="tokens per document")
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--haystack", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()

    words = load_haystack(args.haystack).words
    vocab = llama_cpp.Llama(str(default_model()), vocab_only=True, verbose=False)
    per_word = len(vocab.tokenize("".join(words[:2000]).encode())) / 2000
    n = int(args.tokens / per_word)
    docs = ["".join(words[:n]), "".join(words[n:2 * n])]
    work = Path(tempfile.mkdtemp(prefix="doc_switch_"))
    ctx = str(2 * args.tokens + 1024)
    server = ServerProcess(["-c", ctx, "-t", str(args.threads), "--doc-cache", str(work / "cache")],
                           work / "serve.log")
    print("| request | document | how | wall s |\n|---|---|---|---|")
    try:
        for i in range(args.requests):
            which = "AB"[i % 2]
            body = {"messages": [{"role": "user", "content": f"{docs[i % 2]}\n\n{QUESTION}"}],
                    "max_tokens": 16, "temperature": 0}
            started = time.perf_counter()
            status, r = server.post_json("/v1/chat/completions", body, timeout=3600)
            wall = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {r}")
            _, state = server.request("GET", "/extras/lampe")
            read = state["last_document"]
            print(f"| {i + 1} | {which} ({read['n_tokens']:,} tokens) | {read['how']} | {wall:.2f} |", flush=True)
            if args.output:
                with open(args.output, "a") as f:
                    f.write(json.dumps({"switch": i + 1, "document": which, "wall_s": wall, "read": read,
                                        "threads": args.threads}) + "\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
