"""DOCX: the paragraphs and tables of word/document.xml, in document order.

Read with zipfile and ElementTree: python-docx would add lxml for the same
text, and its paragraph list leaves out tables.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator, List, Optional
from xml.etree import ElementTree

from .document import Document, DocumentError

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_APP = "{http://schemas.openxmlformats.org/officeDocument/2006/extended-properties}"
_BODY = "word/document.xml"


def _paragraph(p: ElementTree.Element) -> str:
    parts: List[str] = []
    for el in p.iter():
        if el.tag == _W + "t" and el.text:
            parts.append(el.text)
        elif el.tag == _W + "tab":
            parts.append("\t")
        elif el.tag in (_W + "br", _W + "cr"):
            parts.append("\n")
    return "".join(parts).strip()


def _blocks(body: ElementTree.Element) -> Iterator[str]:
    for child in body:
        if child.tag == _W + "p":
            yield _paragraph(child)
        elif child.tag == _W + "tbl":
            for row in child.iter(_W + "tr"):
                cells = (" ".join(_paragraph(p) for p in tc.iter(_W + "p")).strip() for tc in row.iter(_W + "tc"))
                yield " | ".join(cells)
        elif child.tag == _W + "sdt":  # a content control (a table of contents, a cover page)
            content = child.find(_W + "sdtContent")
            if content is not None:
                yield from _blocks(content)


def _pages(book: zipfile.ZipFile) -> Optional[int]:
    """The page count Word saved in docProps/app.xml (absent in files other tools write)."""
    try:
        pages = ElementTree.fromstring(book.read("docProps/app.xml")).find(_APP + "Pages")
        return int(pages.text) if pages is not None and pages.text else None
    except (KeyError, ElementTree.ParseError, ValueError):
        return None


def read_docx(path: Path, book: zipfile.ZipFile) -> Document:
    try:
        root = ElementTree.fromstring(book.read(_BODY))
    except KeyError:
        raise DocumentError(f"{path}: not a valid DOCX ({_BODY} is missing)") from None
    except ElementTree.ParseError as e:
        raise DocumentError(f"{path}: corrupt DOCX ({_BODY}: {e})") from None
    body = root.find(_W + "body")
    text = "\n\n".join(b for b in _blocks(body) if b) if body is not None else ""
    if not text:
        raise DocumentError(f"{path}: no text found in the DOCX")
    return Document(text, "DOCX", _pages(book), "pages")
