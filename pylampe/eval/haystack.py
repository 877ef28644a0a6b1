"""Filler text for long prompts: the classic repeated sentences or a real document."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..documents import read_document

# The classic passkey filler (Mohtashami & Jaggi 2023; llama.cpp's examples/passkey).
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "

REPEAT = "repeat"


@dataclass(frozen=True)
class Haystack:
    """Text as a sequence of units (a filler paragraph, or a word with its trailing space).

    ``units(n)`` is the first n of them; a document has ``len(words)`` units,
    the repeated filler has no end.
    """

    name: str
    words: Optional[List[str]] = None  # None: FILLER repeated

    def units(self, n: int) -> List[str]:
        if self.words is None:
            return [FILLER] * n
        if n > len(self.words):
            raise ValueError(f"the haystack {self.name} is too short: {len(self.words)} words, {n} needed")
        return self.words[:n]

    @property
    def max_units(self) -> Optional[int]:
        return None if self.words is None else len(self.words)

    def text(self, n: int) -> str:
        return "".join(self.units(n))


def load_haystack(source: str) -> Haystack:
    """``repeat``, a .jsonl file whose records' ``input`` fields are joined by blank lines
    (LongBench/L-Eval style), or a document (text, PDF, EPUB, DOCX, HTML: pylampe.documents).

    Raises:
        OSError: the file cannot be read; ValueError (a DocumentError among them): it holds no text.
    """
    if source == REPEAT:
        return Haystack(REPEAT)
    path = Path(source)
    if path.suffix != ".jsonl":
        path.stat()  # a missing file is an OSError, like a .jsonl's
        text = read_document(path).text
    else:
        text = path.read_text(encoding="utf-8")
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        if not all(isinstance(d, dict) and isinstance(d.get("input"), str) for d in docs):
            raise ValueError(f"{source}: every line must be a JSON object with an 'input' text")
        text = "\n\n".join(d["input"].strip() for d in docs)
    words = re.findall(r"\S+\s*", text)
    if not words:
        raise ValueError(f"no text in {source}")
    return Haystack(path.name, words)
