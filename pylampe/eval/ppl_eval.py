"""Perplexity of a long text at several context lengths, overall and per span of T positions.

Logits are computed for every position but reduced one batch at a time, so
memory stays at one batch's [n_batch, n_vocab] however long the context.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np

from .decoder import Decoder
from .haystack import Haystack
from .method import Method
from .records import Record, Records
from .runtime import Runtime
from .scoring import BucketedNll, target_logprobs

KEY_FIELDS = ("model", "haystack", "method", "length")


def text_tokens(runtime: Runtime, haystack: Haystack, n_tokens: int) -> List[int]:
    """The haystack's first ``n_tokens`` tokens (BOS first).

    Raises:
        ValueError: the haystack is shorter.
    """
    # Every unit is at least one token: n_tokens units are enough.
    n_units = n_tokens if haystack.max_units is None else min(n_tokens, haystack.max_units)
    tokens = runtime.tokenize(haystack.text(n_units))
    if len(tokens) < n_tokens:
        raise ValueError(f"the haystack {haystack.name} has {len(tokens)} tokens, fewer than {n_tokens}")
    return tokens[:n_tokens]


def perplexity(decoder: Decoder, prefill: Callable, tokens: Sequence[int], bucket: int) -> BucketedNll:
    """NLL of tokens[1:], each bucketed by its index."""
    nll = BucketedNll(bucket)
    done = 0  # tokens whose logits were seen: row k predicts tokens[done + k + 1]

    def sink(logits: np.ndarray) -> None:
        nonlocal done
        targets = tokens[done + 1 : done + 1 + len(logits)]
        nll.add(done + 1, target_logprobs(logits[: len(targets)], targets))
        done += len(logits)

    decoder.reset(len(tokens))
    prefill(decoder, tokens, sink)
    return nll


def run_ppl(
    runtime: Runtime, methods: Sequence[Method], lengths: Sequence[int], haystack: Haystack,
    records: Records, on_tokens: Callable[[int], None] = lambda n: None,
    start: Callable[[int], None] = lambda total: None,
) -> List[Record]:
    """Evaluate every (method, length) not yet in ``records``; returns this run's records."""
    t = runtime.info.n_ctx_train
    tokens = text_tokens(runtime, haystack, max(lengths))
    base = {"model": runtime.model_path.name, "haystack": haystack.name}

    def key(method: Method, length: int) -> Record:
        return {**base, "method": method.label, "length": length}

    todo = [(m, n) for m in methods for n in lengths if key(m, n) not in records]
    start(sum(n for _, n in todo))
    for method, length in todo:
        setup = method.setup(runtime.info, length)
        llm = runtime.load(setup, length)
        try:
            nll = perplexity(Decoder(llm, on_tokens), setup.prefill, tokens[:length], t)
        finally:
            llm.close()
        records.add({
            **key(method, length), "n_tokens": length, "ppl": nll.overall(),
            "buckets": [
                {"start": b * t, "end": min((b + 1) * t, length), "ppl": p, "n": nll.count[b]}
                for b, p in zip(sorted(nll.nll), nll.perplexities())
            ],
            "params": setup.params,
        })
    return records.select(key(m, n) for m in methods for n in lengths)
