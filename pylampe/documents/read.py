"""Which converter a file needs: by its first bytes (a PDF or a ZIP says what it is), then by
its name (HTML), else text."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Union

from .docx import read_docx
from .document import Document, DocumentError
from .epub import read_epub
from .html import html_to_text
from .pdf import read_pdf
from .text import decode_text

SUPPORTED = "PDF, EPUB, DOCX, HTML, Markdown or UTF-8 text"

_HTML_SUFFIXES = (".html", ".htm", ".xhtml")
_MARKDOWN_SUFFIXES = (".md", ".markdown")
_SNIFF = 8192

# Formats people have that are not supported: named, with what to do.
_MAGIC = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Word 97-2003 (.doc) or other OLE file: save it as DOCX or PDF"),
    (b"{\\rtf", "RTF: save it as DOCX or PDF"),
    (b"\x89PNG", "a PNG image: a picture of text needs OCR first"),
    (b"\xff\xd8\xff", "a JPEG image: a picture of text needs OCR first"),
    (b"GIF8", "a GIF image"),
    (b"AT&TFORM", "DjVu: convert it to PDF with a text layer"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
)
_MOBI = (60, b"BOOKMOBI")  # MOBI/AZW: the type at offset 60
_ZIP_MEMBERS = (
    ("ppt/", "a PowerPoint (.pptx) file: export it as PDF"),
    ("xl/", "an Excel (.xlsx) file: export it as CSV or PDF"),
)


def _unsupported(path: Path, what: str) -> DocumentError:
    return DocumentError(f"{path}: unsupported type: {what} (pylampe reads {SUPPORTED})")


def _read_zip(path: Path) -> Document:
    kind = {".docx": "DOCX", ".epub": "EPUB"}.get(path.suffix.lower(), "ZIP")
    try:
        with zipfile.ZipFile(path) as book:
            names = set(book.namelist())
            mimetype = book.read("mimetype").decode("ascii", "replace").strip() if "mimetype" in names else ""
            if mimetype == "application/epub+zip" or "META-INF/container.xml" in names:
                return read_epub(path, book)
            if "word/document.xml" in names:
                return read_docx(path, book)
            if mimetype.startswith("application/vnd.oasis.opendocument"):
                raise _unsupported(path, "an OpenDocument file: save it as DOCX or PDF")
            what = next((w for prefix, w in _ZIP_MEMBERS if any(n.startswith(prefix) for n in names)),
                        "a ZIP archive that is neither EPUB nor DOCX")
            raise _unsupported(path, what)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise DocumentError(f"{path}: truncated or corrupt {kind} ({e})") from None


def read_document(path: Union[str, Path]) -> Document:
    """The text of a PDF, EPUB, DOCX, HTML, Markdown or text file.

    Raises:
        DocumentError: the file cannot be read, is damaged, encrypted, has no
            text, is of another type, or is text in an encoding other than UTF-8.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
        if head.startswith(b"%PDF-"):
            return read_pdf(path)
        if head.startswith(b"PK\x03\x04"):
            return _read_zip(path)
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise _unsupported(path, what)
        if head[_MOBI[0]:_MOBI[0] + len(_MOBI[1])] == _MOBI[1]:
            raise _unsupported(path, "a MOBI/AZW e-book: convert it to EPUB (without DRM)")
        suffix = path.suffix.lower()
        if suffix in (".pdf", ".epub", ".docx"):
            raise DocumentError(f"{path}: corrupt {suffix[1:].upper()} (it does not start like one)")
        data = path.read_bytes()
    except OSError as e:
        raise DocumentError(f"cannot read {path}: {e.strerror or e}") from None
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        raise _unsupported(path, "a binary file")
    text = decode_text(data, path)
    sniff = text[:512].lstrip().lower()
    if suffix in _HTML_SUFFIXES or sniff.startswith(("<!doctype html", "<html")):
        return Document(html_to_text(text), "HTML")
    return Document(text, "Markdown" if suffix in _MARKDOWN_SUFFIXES else "text")
