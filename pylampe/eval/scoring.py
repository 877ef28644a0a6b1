"""Reductions of logits to scores, row block by row block so memory stays bounded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

# Rows reduced at once: a [64, n_vocab] float32 temporary (39 MB at 152K vocab).
_ROWS = 64


def target_logprobs(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """log p(targets[k] | row k): log-softmax read at one column per row, in float64."""
    out = np.empty(len(targets))
    idx = np.asarray(targets)
    for i in range(0, len(targets), _ROWS):
        block = logits[i : i + _ROWS]
        m = block.max(axis=1, keepdims=True)
        lse = m[:, 0].astype(np.float64) + np.log(np.exp(block - m).sum(axis=1, dtype=np.float64))
        out[i : i + _ROWS] = block[np.arange(len(block)), idx[i : i + _ROWS]] - lse
    return out


def margins(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """Per row: the target's logit minus the best other token's (> 0: greedy picks it)."""
    rows = np.arange(len(targets))
    right = logits[rows, targets].astype(np.float64)
    others = logits.copy()
    others[rows, targets] = -np.inf
    return right - others.max(axis=1)


@dataclass
class BucketedNll:
    """Negative log-likelihood summed per position bucket [k*size, (k+1)*size)."""

    size: int
    nll: Dict[int, float] = field(default_factory=dict)
    count: Dict[int, int] = field(default_factory=dict)

    def add(self, first_pos: int, logprobs: np.ndarray) -> None:
        """``logprobs[k]`` is the log-probability of the token at position first_pos + k."""
        buckets = (first_pos + np.arange(len(logprobs))) // self.size
        for b in np.unique(buckets):
            sel = buckets == b
            self.nll[int(b)] = self.nll.get(int(b), 0.0) - float(logprobs[sel].sum())
            self.count[int(b)] = self.count.get(int(b), 0) + int(sel.sum())

    def perplexities(self) -> List[float]:
        """exp(mean NLL) of each bucket, in position order."""
        return [float(np.exp(self.nll[b] / self.count[b])) for b in sorted(self.nll)]

    def overall(self) -> float:
        return float(np.exp(sum(self.nll.values()) / sum(self.count.values())))
