"""One sequence on an open Llama: decode tokens at chosen positions, read logits per batch.

``llama_cpp.Llama.eval`` ties positions to token indices and keeps logits for
every position (n_ctx x n_vocab floats: gigabytes at 32K tokens). The
evaluations here need neither: Self-Extend moves positions, perplexity
reduces each batch's logits as soon as they exist.
"""

from __future__ import annotations

import ctypes
from typing import Callable, Optional, Sequence

import llama_cpp
import numpy as np

from ..llama import Llama

# Receives a batch's logits [n, n_vocab]: a view that the next decode overwrites.
LogitsSink = Callable[[np.ndarray], None]

_SEQ_ID = 0


class Decoder:
    """Decodes one sequence (id 0) of ``llm`` in batches of at most ``llm.n_batch`` tokens.

    ``pos`` is the position the next token gets; ``on_tokens(n)`` is told of
    every batch (a progress bar).
    """

    def __init__(self, llm: Llama, on_tokens: Callable[[int], None] = lambda n: None):
        self.llm = llm
        self.on_tokens = on_tokens
        self.n_vocab = llm.n_vocab()
        self._mem = llama_cpp.llama_get_memory(llm._ctx.ctx)
        self.pos = 0

    def reset(self, reference_length: int) -> None:
        """Empty the sequence; LaMPE maps positions for a prompt of ``reference_length``."""
        llama_cpp.llama_memory_clear(self._mem, True)
        self.pos = 0
        # Set once per prompt: answer and generated tokens keep the prompt's L (spec, section 4).
        self.llm._set_reference(reference_length)

    def decode(self, tokens: Sequence[int], sink: Optional[LogitsSink] = None) -> np.ndarray:
        """Decode ``tokens`` at positions ``pos, pos+1, ...``; returns the last token's logits.

        With a ``sink``, every token's logits are computed and passed on per batch.
        """
        if not tokens:
            raise ValueError("nothing to decode")
        for i in range(0, len(tokens), self.llm.n_batch):
            chunk = tokens[i : i + self.llm.n_batch]
            self.llm._batch.set_batch(chunk, self.pos, sink is not None)
            self.llm._ctx.decode(self.llm._batch)
            # Without a sink the batch has one output row: its last token's.
            logits = self._logits(len(chunk) if sink is not None else 1)
            if sink is not None:
                sink(logits)
            self.pos += len(chunk)
            self.on_tokens(len(chunk))
        return logits[-1].copy()

    def _logits(self, n_rows: int) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits(self.llm._ctx.ctx)
        return np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (n_rows, self.n_vocab)
        )

    def truncate(self, pos: int) -> None:
        """Forget every token at position ``pos`` or later."""
        llama_cpp.llama_memory_seq_rm(self._mem, _SEQ_ID, pos, -1)
        self.pos = pos

    def group(self, p0: int, p1: int, first_index: int, factor: int) -> None:
        """Move the tokens at positions [p0, p1) to ``index // factor`` (Self-Extend grouping).

        They are the tokens with indices ``first_index, first_index + 1, ...`` in
        the sequence; the next token goes right after the last grouped position.
        """
        llama_cpp.llama_memory_seq_add(self._mem, _SEQ_ID, p0, p1, first_index - p0)
        end = first_index + (p1 - p0)
        llama_cpp.llama_memory_seq_div(self._mem, _SEQ_ID, first_index, end, factor)
        self.pos = llama_cpp.llama_memory_seq_pos_max(self._mem, _SEQ_ID) + 1
