"""A document's tokens into the model's KV cache, the cheapest way: already there, restored from
the document cache, or read (evaluated) and then saved for the next time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

from ..conversation import read_prefix
from ..llama import Llama
from .cache import DocCache

# Shorter documents are read again rather than cached: reading them costs about what restoring does.
MIN_TOKENS = 256


@dataclass(frozen=True)
class DocumentRead:
    """How the document got into the KV cache: "kept" (it was there), "restored" or "read"."""

    how: str
    n_tokens: int
    seconds: float
    saved: Optional[str] = None  # the entry written after reading, if any


def read_once(llm: Llama, tokens: Sequence[int], cache: Optional[DocCache], name: str) -> DocumentRead:
    """Make ``tokens`` the model's whole sequence so that the prompt that continues them only
    evaluates its own tokens. Read, the document has L = its length, as in
    ``Conversation.read_document``; a restored one has exactly the same state."""
    tokens = list(tokens)
    started = time.perf_counter()
    if llm.n_tokens >= len(tokens) and list(llm.input_ids[: len(tokens)]) == tokens:
        return DocumentRead("kept", len(tokens), time.perf_counter() - started)
    use_cache = cache is not None and len(tokens) >= MIN_TOKENS
    if use_cache and cache.restore(tokens):
        return DocumentRead("restored", len(tokens), time.perf_counter() - started)
    read_prefix(llm, tokens)
    seconds = time.perf_counter() - started
    saved = cache.save(tokens, name) if use_cache else None
    return DocumentRead("read", len(tokens), seconds, saved)
