"""-f FILE for the commands: a document read and converted, and the line that says what was read."""

from __future__ import annotations

from pathlib import Path

from ..documents import Document, DocumentError, read_document
from ..memory import gib
from .errors import CliError, UsageError


def read_file(path: str) -> Document:
    """The converted document; one-line errors (exit 1), an empty one is a usage error (exit 2)."""
    try:
        doc = read_document(path)
    except DocumentError as e:
        raise CliError(str(e)) from None
    if not doc.text.strip():
        raise UsageError(f"the document {path} is empty")
    return doc


def what_was_read(path: str, doc: Document, n_tokens: int, n_ctx_train: int, n_ctx: int, kv_bytes: int,
                  kv_type: str) -> str:
    """``book.pdf: 212 pages, 54,010 words, 96,310 tokens (11.8 T); context 100,608; KV 2.1 GiB f16``."""
    multiple = f" ({n_tokens / n_ctx_train:.1f} T)" if n_ctx_train > 0 else ""
    return (f"{Path(path).name}: {doc.describe()}, {n_tokens:,} tokens{multiple}; context {n_ctx:,}; "
            f"KV {gib(kv_bytes)} {kv_type}")
