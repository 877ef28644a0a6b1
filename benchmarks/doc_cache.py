"""Read once: the first and the second ``pylampe chat -f`` session on the same document.

For each length: a document of about N tokens (the first words of --haystack,
as the chat template wraps it), written to a text file (or a PDF with
--pdf), then ``pylampe chat -f DOC --stats`` twice with one question on
stdin and a fresh --doc-cache directory. The time to the first answer token
is wall time from starting the process to the first byte on stdout (model
load, conversion, reading or restoring the document, the question's
prefill): what a person waits for. It prints a Markdown row per length,
the cache entry's size per 1K tokens, and appends JSON records to --output.

    .venv/bin/python benchmarks/doc_cache.py --tokens 16384 -t 2 \\
        --haystack ../shared/data/leval_sci_fi.jsonl -o results/doc_cache.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pylampe  # noqa: E402,F401  (first: it points llama_cpp at its library)
import llama_cpp  # noqa: E402
from pylampe.cli.model import default_model  # noqa: E402
from pylampe.conversation import opening_tokens  # noqa: E402
from pylampe.eval.haystack import load_haystack  # noqa: E402

QUESTION = "Who is the main character of this text? Answer in one sentence.\n"


def document_text(words: List[str], n_tokens: int, vocab: llama_cpp.Llama) -> str:
    """The first words of the haystack whose chat opening is about n_tokens."""
    n = n_tokens  # words; refined by the measured tokens per word
    for _ in range(4):
        text = "".join(words[:n])
        got = len(opening_tokens(vocab, text))
        if abs(got - n_tokens) <= n_tokens // 200:
            break
        n = min(len(words), int(n * n_tokens / got))
    return text


def session(doc: Path, cache: Path, threads: int, extra: List[str]) -> Dict[str, Any]:
    """One ``pylampe chat`` run: seconds to the first answer byte, and what it said on stderr."""
    cmd = [str(Path(sys.executable).with_name("pylampe")), "chat", "-f", str(doc), "--doc-cache", str(cache),
           "--stats", "-n", "16", "-t", str(threads), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(QUESTION.encode())
    proc.stdin.close()
    proc.stdout.read(1)
    first = time.perf_counter() - started
    answer = proc.stdout.read().decode(errors="replace")
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"{cmd} failed:\n{stderr}")
    line = re.search(r"stats: (document: .*)", stderr)
    return {"first_token_s": first, "document": line.group(1) if line else None, "answer": answer.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="16384", help="document lengths in tokens, comma-separated")
    ap.add_argument("--haystack", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--cache-type", default="f16", help="KV cache type for K and V (f16, q8_0, ...)")
    ap.add_argument("--pdf", action="store_true", help="make the document a PDF (reportlab) instead of text")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()

    words = load_haystack(args.haystack).words
    vocab = llama_cpp.Llama(str(default_model()), vocab_only=True, verbose=False)
    extra = ["--cache-type-k", args.cache_type, "--cache-type-v", args.cache_type]
    print("| document | KV | first session: first answer token | second session | speed-up | entry MiB | "
          "MiB per 1K tokens |\n|---|---|---|---|---|---|---|")
    for n_tokens in (int(t) for t in args.tokens.split(",")):
        work = Path(tempfile.mkdtemp(prefix="doc_cache_"))
        text = document_text(words, n_tokens, vocab)
        doc = work / "doc.txt"
        doc.write_text(text, encoding="utf-8")
        if args.pdf:
            doc = _pdf(text, work / "doc.pdf")
        cache = work / "cache"
        first, second = (session(doc, cache, args.threads, extra) for _ in range(2))
        entry = next(cache.glob("*.kv"))
        n = int(re.search(r"document: ([\d,]+) tokens", second["document"]).group(1).replace(",", ""))
        size = entry.stat().st_size
        record = {"tokens": n, "kv": args.cache_type, "pdf": args.pdf, "first": first, "second": second,
                  "entry_bytes": size, "threads": args.threads}
        print(f"| {n:,} tokens{' (PDF)' if args.pdf else ''} | {args.cache_type} | {first['first_token_s']:.1f} s | "
              f"{second['first_token_s']:.2f} s | {first['first_token_s'] / second['first_token_s']:.0f}x | "
              f"{size / 2**20:.0f} | {size / 2**20 / n * 1000:.2f} |", flush=True)
        print(f"  first: {first['document']}\n  second: {second['document']}\n"
              f"  answers equal: {first['answer'] == second['answer']}", file=sys.stderr, flush=True)
        if args.output:
            with open(args.output, "a") as f:
                f.write(json.dumps(record) + "\n")


def _pdf(text: str, path: Path) -> Path:
    """The text as a PDF of A4 pages (reportlab), wrapped at 100 characters, 60 lines a page."""
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    c = Canvas(str(path), pagesize=A4)
    lines = [line for para in text.split("\n") for line in (textwrap.wrap(para, 100) or [""])]
    for start in range(0, len(lines), 60):
        y = 800
        for line in lines[start:start + 60]:
            c.setFont("Helvetica", 8)
            c.drawString(40, y, line)
            y -= 12
        c.showPage()
    c.save()
    return path


if __name__ == "__main__":
    main()
