"""What a converter returns, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


class DocumentError(ValueError):
    """The file cannot be read as a document; the message is one line for the user."""


@dataclass(frozen=True)
class Document:
    """A document's text, its kind ("PDF", "EPUB", ...) and its parts as the format counts them
    (pages of a PDF, chapters of an EPUB; None where the format has none)."""

    text: str
    kind: str
    parts: Optional[int] = None
    part_name: str = "pages"

    @property
    def words(self) -> int:
        return len(self.text.split())

    def describe(self) -> str:
        """``"212 pages, 54,010 words"``."""
        parts = f"{self.parts:,} {self.part_name if self.parts != 1 else self.part_name.rstrip('s')}, " \
            if self.parts is not None else ""
        return f"{parts}{self.words:,} word{'s' if self.words != 1 else ''}"
