"""A request whose prompt starts with a long document: the document's KV state from the document
cache (or read, then saved), so that users switching between documents pay seconds per switch.

Where the document ends is where ``chat -f`` and the README's API examples put
the question: the first user message (a completion's prompt) is the
document, a blank line, then the question; the document is what comes
before the last blank line. It is read as ``chat -f`` reads it, with L = its
own length, so a chat session and the server share entries.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..conversation import completion_prefix, document_prefix
from ..doc_cache import MIN_TOKENS, DocCache, DocStore, DocumentRead, read_once
from ..llama import Llama

# The chat format whose prompts pylampe.conversation formats itself (the model's own template).
_OWN_TEMPLATE = "chat_template.default"


def _split(text: Any) -> Optional[str]:
    """The document before the question (the last blank line), or None."""
    if not isinstance(text, str):
        return None
    document, blank, _ = text.rpartition("\n\n")
    return document if blank and document.strip() else None


def document_tokens(llm: Llama, request: Dict[str, Any], chat: bool) -> Optional[List[int]]:
    """The tokens of the request's document, or None when it has none worth caching."""
    if chat:
        messages = request.get("messages") or []
        first = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
        if first is None or not formats_chats(llm):
            return None
        document = _split(messages[first].get("content"))
        if document is None:
            return None
        prefix = document_prefix(llm, document, messages[:first])
    else:
        document = _split(request.get("prompt"))
        if document is None:
            return None
        prompt = request["prompt"]
        prefix = completion_prefix(llm, document, llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    return prefix if len(prefix) >= MIN_TOKENS else None


def formats_chats(llm: Llama) -> bool:
    """Whether ``llm`` formats chats with the model's own template, the one
    ``pylampe.conversation`` lays documents out with."""
    return llm.chat_format == _OWN_TEMPLATE


class ServedDocuments:
    """The document cache of the served models (one DocCache per loaded model); with no store
    (--no-doc-cache) documents are still read ahead of their question by ``read``, never kept."""

    def __init__(self, store: Optional[DocStore]):
        self.store = store
        self._caches: Dict[int, DocCache] = {}
        self.last: Optional[DocumentRead] = None

    def _cache(self, llm: Llama) -> Optional[DocCache]:
        if self.store is None:
            return None
        cache = self._caches.get(id(llm))
        if cache is None or cache.llm is not llm:  # another model was loaded (an alias swap)
            cache = self._caches[id(llm)] = DocCache(llm, self.store)
        return cache

    def prepare(self, llm: Llama, request: Dict[str, Any], chat: bool) -> Optional[DocumentRead]:
        """Put the request's document into ``llm``'s KV cache (kept, restored or read and saved)."""
        if self.store is None:
            return None
        tokens = document_tokens(llm, request, chat)
        if tokens is None:
            return None
        self.last = read_once(llm, tokens, self._cache(llm), f"request ({len(tokens)} tokens)")
        return self.last

    def read(self, llm: Llama, tokens: List[int], name: str) -> DocumentRead:
        """Put a document's tokens (``conversation.document_prefix``) into ``llm``'s KV cache
        before its first question."""
        self.last = read_once(llm, tokens, self._cache(llm), name)
        return self.last

