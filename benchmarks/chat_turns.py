"""Turn 2 of a chat about a long document: KV-cache reuse against a cold prefill.

For each document length and method (LaMPE, or upstream attention with YaRN
sized for the context), one model and context:

1. turn 1, cold: the document and a first question (the document's prefill);
2. turn 2 with reuse: the conversation plus a ~20-token question, as
   ``pylampe chat`` and ``pylampe serve`` evaluate it (llama-cpp-python keeps
   the longest common prefix; only the new tokens are evaluated);
3. turn 2, cold: the same two-turn conversation evaluated from an empty cache.

It prints and appends to --output (JSON Lines) the time to first token
(TTFT) of each, the tokens reused and evaluated, the greedy answers of 2 and
3 and how they differ (first answer token's logits: largest difference,
same top token; the answers' common prefix). Under upstream attention (YaRN,
or LaMPE inside the trained window) reuse is exact up to floating point;
under LaMPE beyond T the reused keys of layers >= 1 keep turn 1's mapping,
so 2 and 3 may differ: this is where that is measured.

    .venv/bin/python benchmarks/chat_turns.py --tokens 16384 --method lampe,yarn -t 2 \\
        --haystack ../shared/data/leval_sci_fi.jsonl -o results/chat_turns.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pylampe  # noqa: E402,F401  (first: it points llama_cpp at its library)
import llama_cpp  # noqa: E402
from pylampe.cli.model import default_model, round_up  # noqa: E402
from pylampe.conversation import Conversation  # noqa: E402
from pylampe.eval.haystack import Haystack, load_haystack  # noqa: E402
from pylampe.eval.methods import parse_method  # noqa: E402
from pylampe.eval.model_info import ModelInfo  # noqa: E402
from pylampe.metered import MeteredLlama, TurnStats  # noqa: E402

QUESTION_1 = "Who is the main character of this text? Answer in one sentence."
QUESTION_2 = "Where does the text take place, and what happens in its very last paragraph?"


class _LogitsLlama(MeteredLlama):
    """Keeps the logits of each prompt's last token (the first answer token's distribution)."""

    first_logits: Optional[np.ndarray] = None

    def eval(self, tokens: Sequence[int]) -> None:
        turn = self._turn
        prompt = turn is not None and turn.prefill_s == 0 and turn.generated_tokens == 0
        super().eval(tokens)
        if prompt and len(tokens) > 0:
            ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, -1)
            self.first_logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab(),)).copy()


def document(haystack: str, n_tokens: int, count: Any, skip_words: int = 0) -> str:
    """The haystack's words from ``skip_words`` on, as many as fit in n_tokens tokens."""
    stack = load_haystack(haystack)
    if skip_words:
        stack = Haystack(stack.name, stack.words[skip_words:] if stack.words else None)
    lo, hi = 1, n_tokens if stack.max_units is None else min(n_tokens, stack.max_units)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(stack.text(mid)) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return stack.text(lo).strip()


def turn_record(stats: TurnStats) -> Dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.as_dict().items()}


def run_one(model: Path, method: str, n_doc: int, haystack: str, threads: Optional[int],
            n_gen: int, skip_words: int = 0) -> Dict[str, Any]:
    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    info = ModelInfo.from_metadata(vocab.metadata)
    doc = document(haystack, n_doc, lambda t: len(vocab.tokenize(t.encode(), add_bos=False)), skip_words)
    n_q2 = len(vocab.tokenize(QUESTION_2.encode(), add_bos=False))
    vocab.close()
    n_ctx = round_up(n_doc + 256 + 2 * n_gen, 256)
    setup = parse_method(method).setup(info, n_ctx)
    llm = _LogitsLlama(str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                       flash_attn=True, chat_format="chat_template.default", verbose=False,
                       **setup.llama_kwargs)
    sampling = dict(max_tokens=n_gen, temperature=0.0)
    record: Dict[str, Any] = {"method": method, "doc_tokens": n_doc, "n_ctx": n_ctx,
                              "question_2_tokens": n_q2, "T": info.n_ctx_train,
                              "params": setup.params, "threads": threads, "skip_words": skip_words}

    def ask(chat: Conversation, question: str) -> str:
        started = time.perf_counter()
        answer = "".join(chat.ask(question, **sampling))
        print(f"  {method} {n_doc}: {question[:30]!r}... {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
        return answer

    chat = Conversation(llm, doc)
    record["answer_1"] = ask(chat, QUESTION_1)
    record["turn_1_cold"] = turn_record(llm.last_turn)
    record["answer_2_reuse"] = ask(chat, QUESTION_2)
    record["turn_2_reuse"] = turn_record(llm.last_turn)
    record["lampe_L_turn_2"] = llm.lampe_state()["L"] if llm.lampe else None
    record["lampe_ubatches"] = llm.lampe_counters() if llm.lampe else None  # engaged, never plain beyond T
    reuse_logits = llm.first_logits

    cold = Conversation(llm, doc)
    cold.messages = chat.messages[:-2]  # turn 1 and its answer, as the reuse run had them
    llm.reset()  # an empty KV cache: the whole conversation is evaluated again
    record["answer_2_cold"] = ask(cold, QUESTION_2)
    record["turn_2_cold"] = turn_record(llm.last_turn)
    cold_logits = llm.first_logits
    llm.close()

    a, b = record["answer_2_reuse"], record["answer_2_cold"]
    common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    record["answers_equal"] = a == b
    record["answers_common_prefix_chars"] = common
    if reuse_logits is not None and cold_logits is not None:
        record["first_token_max_abs_logit_diff"] = float(np.max(np.abs(reuse_logits - cold_logits)))
        record["first_token_same_top"] = int(np.argmax(reuse_logits)) == int(np.argmax(cold_logits))
    record["ttft_speedup"] = round(record["turn_2_cold"]["ttft_s"] / record["turn_2_reuse"]["ttft_s"], 1)
    return record


def table(records: List[Dict[str, Any]]) -> str:
    lines = [
        "| document tokens | method | turn 1 TTFT (cold) | turn 2 TTFT, reuse | turn 2 TTFT, cold "
        "| speed-up | turn 2 tokens evaluated, reuse / cold | same answer | first-token max abs logit diff "
        "| document skips words |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        t1, t2, t2c = r["turn_1_cold"], r["turn_2_reuse"], r["turn_2_cold"]
        lines.append(
            f"| {r['doc_tokens']} | {r['method']} | {t1['ttft_s']:.1f} s | {t2['ttft_s']:.2f} s "
            f"| {t2c['ttft_s']:.1f} s | {r['ttft_speedup']:.0f}x | {t2['prefill_tokens']} / "
            f"{t2c['prefill_tokens']} | {'yes' if r['answers_equal'] else 'no'} "
            f"| {r.get('first_token_max_abs_logit_diff', float('nan')):.3g} | {r.get('skip_words', 0)} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", type=Path, help="GGUF model (default: the SmolLM2 model)")
    p.add_argument("--tokens", default="16384", help="document lengths in tokens, comma-separated")
    p.add_argument("--method", default="lampe,yarn", help="methods, comma-separated (lampe, yarn, none, ...)")
    p.add_argument("--haystack", default="../shared/data/leval_sci_fi.jsonl",
                   help="document source: .txt, .jsonl with 'input' fields, or 'repeat'")
    p.add_argument("--n-gen", type=int, default=32, help="greedy tokens per answer (default: 32)")
    p.add_argument("-t", "--threads", type=int, help="CPU threads")
    p.add_argument("--skip-words", default="0",
                   help="documents start this many words into the haystack; comma-separated for "
                   "several documents (default: 0)")
    p.add_argument("-o", "--output", type=Path, help="append the records here (JSON Lines)")
    args = p.parse_args(argv)
    model = args.model or default_model()
    records = []
    for n_doc, skip, method in itertools.product(
            (int(x) for x in args.tokens.split(",")), [int(x) for x in args.skip_words.split(",")],
            args.method.split(",")):
        record = {"model": model.name, **run_one(model, method, n_doc, args.haystack,
                                                  args.threads, args.n_gen, skip)}
        records.append(record)
        print(json.dumps(record), flush=True)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(record) + "\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
