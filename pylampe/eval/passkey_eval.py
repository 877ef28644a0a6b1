"""The passkey benchmark: can the model read back a key hidden at a given depth?

Each prompt is scored two ways: greedy decoding (is the key in the first
``n_gen`` generated tokens) and teacher forcing (the answer's log-probability
and, per answer token, the margin of its logit over the best other token),
from one evaluation of prompt + answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

from .decoder import Decoder
from .haystack import Haystack
from .method import Method
from .passkey import answer, passkey_prompt
from .records import Record, Records
from .runtime import Runtime
from .scoring import margins, target_logprobs

KEY_FIELDS = ("model", "haystack", "method", "length", "depth", "trial", "seed")
DEFAULT_DEPTHS = (0.2, 0.5, 0.8)
DEFAULT_N_GEN = 8


@dataclass(frozen=True)
class Prompt:
    """One passkey prompt, shared by every method."""

    length: int
    depth: float
    trial: int
    key: str
    tokens: List[int]
    answer: List[int]


def build_prompts(
    runtime: Runtime, lengths: Sequence[int], depths: Sequence[float], trials: int,
    seed: int, haystack: Haystack,
) -> List[Prompt]:
    """Trial t uses the key of seed + t at every length and depth, so cells compare."""
    prompts = []
    for length in lengths:
        for depth in depths:
            for trial in range(trials):
                text, key = passkey_prompt(length, runtime.count_tokens, seed + trial, depth, haystack)
                prompts.append(Prompt(length, depth, trial, key, runtime.tokenize(text),
                                      runtime.tokenize(answer(key), bos=False)))
    return prompts


def score(decoder: Decoder, prefill: Callable, prompt: Prompt, n_gen: int) -> Dict[str, object]:
    """Teacher-forced answer scores, then greedy generation from the same prompt."""
    decoder.reset(len(prompt.tokens))
    last = prefill(decoder, prompt.tokens, None)
    end = decoder.pos
    rows = [last[None, :]]
    if len(prompt.answer) > 1:
        decoder.decode(prompt.answer[:-1], lambda logits: rows.append(logits.copy()))
    logits = np.concatenate(rows)
    logprobs = target_logprobs(logits, prompt.answer)
    gaps = margins(logits, prompt.answer)
    decoder.truncate(end)  # the answer out again: generate from the prompt alone
    generated = [int(np.argmax(last))]
    for _ in range(n_gen - 1):
        generated.append(int(np.argmax(decoder.decode(generated[-1:]))))
    return {
        "answer_logprob": float(logprobs.sum()),
        "token_logprobs": logprobs.tolist(),
        "margins": gaps.tolist(),
        "min_margin": float(gaps.min()),
        "generated_tokens": generated,
    }


def run_passkey(
    runtime: Runtime, methods: Sequence[Method], prompts: Sequence[Prompt], seed: int,
    haystack: Haystack, records: Records, on_tokens: Callable[[int], None] = lambda n: None,
    start: Callable[[int], None] = lambda total: None, n_gen: int = DEFAULT_N_GEN,
) -> List[Record]:
    """Score every (method, prompt) not yet in ``records``; returns this run's records.

    ``start(total)`` is told the number of tokens to decode before the first
    one is; ``on_tokens(n)`` after each batch.
    """
    base = {"model": runtime.model_path.name, "haystack": haystack.name, "seed": seed}

    def key(method: Method, p: Prompt) -> Record:
        return {**base, "method": method.label, "length": p.length, "depth": p.depth, "trial": p.trial}

    todo = [(m, p) for m in methods for p in prompts if key(m, p) not in records]
    start(sum(len(p.tokens) + len(p.answer) + n_gen - 2 for _, p in todo))
    for method in methods:
        for length in dict.fromkeys(p.length for m, p in todo if m is method):
            group = [p for m, p in todo if m is method and p.length == length]
            n_ctx = max(len(p.tokens) + max(len(p.answer), n_gen) for p in group)
            setup = method.setup(runtime.info, n_ctx)
            llm = runtime.load(setup, n_ctx)
            try:
                decoder = Decoder(llm, on_tokens)
                for p in group:
                    result = score(decoder, setup.prefill, p, n_gen)
                    text = runtime.detokenize(result["generated_tokens"])
                    records.add({
                        **key(method, p), "n_tokens": len(p.tokens), "key": p.key,
                        "generated": text, "correct": p.key in text, **result,
                        "params": setup.params,
                    })
            finally:
                llm.close()
    return records.select(key(m, p) for m in methods for p in prompts)
