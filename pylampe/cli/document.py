"""-f FILE for the commands: a document read and converted, the lines that say what was read and how,
and the document cache the flags name."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..doc_cache import DocStore, DocumentRead, default_dir
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


def kv_type_label(args: argparse.Namespace) -> str:
    """``f16``, or ``q8_0/f16`` when K and V differ."""
    k, v = args.cache_type_k, args.cache_type_v
    return k if k == v else f"{k}/{v}"


def what_was_read(path: str, doc: Document, n_tokens: int, n_ctx_train: int, n_ctx: int, kv_bytes: int,
                  kv_type: str) -> str:
    """``book.pdf: 212 pages, 54,010 words, 96,310 tokens (11.8 T); context 100,608; KV 2.1 GiB f16``."""
    multiple = f" ({n_tokens / n_ctx_train:.1f} T)" if n_ctx_train > 0 else ""
    return (f"{Path(path).name}: {doc.describe()}, {n_tokens:,} tokens{multiple}; context {n_ctx:,}; "
            f"KV {gib(kv_bytes)} {kv_type}")


def warn(message: str) -> None:
    print(f"pylampe: warning: {message}", file=sys.stderr)


def doc_store(args: argparse.Namespace) -> Optional[DocStore]:
    """The document cache that --doc-cache/--no-doc-cache/--doc-cache-size name; None when off."""
    if getattr(args, "no_doc_cache", False):
        return None
    root = Path(args.doc_cache) if args.doc_cache else default_dir()
    return DocStore(root, args.doc_cache_size, warn=warn)


def read_line(read: DocumentRead) -> str:
    """``document: 96,310 tokens restored from cache in 2.1 s`` (or read, with the speed)."""
    if read.how == "restored":
        return f"document: {read.n_tokens:,} tokens restored from cache in {read.seconds:.1f} s"
    if read.how == "kept":
        return f"document: {read.n_tokens:,} tokens already in the KV cache"
    rate = read.n_tokens / read.seconds if read.seconds > 0 else 0.0
    saved = "; saved to the document cache" if read.saved else ""
    return f"document: {read.n_tokens:,} tokens read in {read.seconds:.1f} s ({rate:.1f} tok/s){saved}"
