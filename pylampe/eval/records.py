"""Results as JSON Lines, one record per line, appended as each one is done.

An interrupted run leaves every finished record behind (and at most one
torn last line, dropped on reload); a rerun skips the keys already there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

Record = Dict[str, Any]


class Records:
    """The records in ``path``, keyed by the values of ``key_fields``."""

    def __init__(self, path: Path, key_fields: Tuple[str, ...]):
        self.path = path
        self.key_fields = key_fields
        self.all: List[Record] = []
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            for line in lines:
                try:
                    self.all.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
            if len(self.all) < len(lines):  # rewrite without the torn line(s)
                path.write_text("".join(json.dumps(r) + "\n" for r in self.all), encoding="utf-8")
        self._keys = {self.key(r) for r in self.all}

    def key(self, record: Record) -> Tuple[Any, ...]:
        return tuple(record.get(f) for f in self.key_fields)

    def __contains__(self, record: Record) -> bool:
        return self.key(record) in self._keys

    def add(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        record = json.loads(line)  # as a rerun will read it (tuples become lists)
        self.all.append(record)
        self._keys.add(self.key(record))

    def select(self, keys: Iterable[Record]) -> List[Record]:
        """The stored records with these keys, in the order of ``keys``."""
        by_key = {self.key(r): r for r in self.all}
        return [by_key[k] for k in (self.key(r) for r in keys) if k in by_key]
