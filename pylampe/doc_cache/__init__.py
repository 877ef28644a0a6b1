"""A document's KV state kept on disk, so that the next session restores it instead of reading it.

``DocStore`` is the directory of entries (checked, written atomically, evicted
least recently used first); ``DocCache`` binds it to a loaded model, keyed by
everything that changes the state (see ``fingerprint``); ``read_once`` puts a
document's tokens into the model's KV cache the cheapest way it can.
"""

from .cache import DocCache
from .reader import MIN_TOKENS, DocumentRead, read_once
from .store import DEFAULT_MAX_BYTES, DocStore, Entry, default_dir

__all__ = ["DEFAULT_MAX_BYTES", "MIN_TOKENS", "DocCache", "DocStore", "DocumentRead", "Entry", "default_dir",
           "read_once"]
