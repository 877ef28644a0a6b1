"""Self-Extend as llama.cpp's passkey example does it: group attention by moving KV positions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .decoder import Decoder, LogitsSink
from .method import Method, Setup
from .model_info import ModelInfo


@dataclass(frozen=True)
class GroupedPrefill:
    """Evaluate the prompt in chunks of ``window`` tokens; before each chunk, move the
    previous one's keys from exact positions to ``index // group``.

    Each chunk (and the answer or generated tokens after the prompt) sees its
    own tokens at exact distances and everything before it grouped by
    ``group``, as upstream's examples/passkey does with llama_memory_seq_add /
    llama_memory_seq_div after each batch.
    """

    window: int
    group: int

    def __call__(self, decoder: Decoder, tokens: Sequence[int], sink: Optional[LogitsSink]) -> np.ndarray:
        start_pos = 0
        for i in range(0, len(tokens), self.window):
            if i > 0 and self.group > 1:
                prev = i - self.window
                decoder.group(start_pos, decoder.pos, prev, self.group)
            start_pos = decoder.pos
            last = decoder.decode(tokens[i : i + self.window], sink)
        return last


@dataclass(frozen=True)
class SelfExtend(Method):
    """Self-Extend (Jin et al. 2024): neighbour window W with exact positions, the rest
    grouped by G (position // G).

    Defaults: W = T // 2 and, from the paper's reach (T - W) * G + W >= L,
    G = ceil((L - W) / (T - W)), at least 1; W is then rounded down to a
    multiple of G so that chunk boundaries group evenly (upstream asserts the
    same of its batch size). Positions then stay below T as long as the
    last prompt chunk plus the generated tokens fit in W; at worst they pass
    T by the number of generated tokens.
    """

    name = "self-extend"
    group: Optional[int] = None
    window: Optional[int] = None

    def setup(self, model: ModelInfo, length: int) -> Setup:
        t = model.n_ctx_train
        window = self.window if self.window is not None else t // 2
        if not 1 <= window < t:
            raise ValueError(f"self-extend window must be in [1, T = {t}), got {window}")
        group = self.group if self.group is not None else max(1, math.ceil((length - window) / (t - window)))
        if group < 1:
            raise ValueError(f"self-extend group must be >= 1, got {group}")
        window = max(group, window - window % group)
        return Setup({"lampe": None}, {"group": group, "window": window}, GroupedPrefill(window, group))
