"""``pylampe cache list|clear``: the documents whose KV state is kept on disk."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..memory import gib
from .document import doc_store
from .flags import add_doc_cache_args


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cache", help="list or clear the document cache",
        description="The document cache keeps each document's KV state (the document read by "
        "chat -f or generate -f, or sent to the server) so that the next session restores it "
        "in seconds instead of reading it again.",
    )
    p.set_defaults(run=lambda args: p.print_help() or 0)
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    for name, run, help_ in (("list", run_list, "the cached documents, most recently used first"),
                             ("clear", run_clear, "remove every cached document")):
        a = actions.add_parser(name, help=help_, description=help_)
        a.set_defaults(run=run)
        add_doc_cache_args(a, switch=False)


def run_list(args: argparse.Namespace) -> int:
    store = doc_store(args)
    entries = store.entries()
    if not entries:
        print(f"the document cache {store.root} is empty")
        return 0
    print(f"{'last used':<16}  {'size':>9}  {'tokens':>9}  {'KV':<9}  {'model':<32}  document")
    for e in entries:
        kv = e.info.get("type_k", "?") if e.info.get("type_k") == e.info.get("type_v") \
            else f"{e.info.get('type_k', '?')}/{e.info.get('type_v', '?')}"
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(e.last_used)):<16}  {gib(e.size):>9}  "
              f"{e.n_tokens:>9,}  {kv:<9}  {str(e.info.get('model', '?'))[:32]:<32}  {e.name}")
    total = sum(e.size for e in entries)
    print(f"{len(entries)} document{'s' if len(entries) != 1 else ''}, {gib(total)} of {gib(store.max_bytes)} in {store.root}", file=sys.stderr)
    return 0


def run_clear(args: argparse.Namespace) -> int:
    store = doc_store(args)
    count, freed = store.clear()
    print(f"removed {count} documents ({gib(freed)}) from {store.root}")
    return 0
