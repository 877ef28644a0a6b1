"""Plain text and Markdown: UTF-8 (or UTF-16/32 with a byte-order mark); other encodings are
named and refused rather than guessed, since a wrong guess turns a book into mojibake quietly."""

from __future__ import annotations

import codecs
from pathlib import Path

from .document import Document, DocumentError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def _guess(data: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    return best.encoding if best is not None else "unknown"


def decode_text(data: bytes, path: Path) -> str:
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        guess = _guess(data)
        hint = f": convert it with iconv -f {guess} -t UTF-8" if guess != "unknown" else ""
        raise DocumentError(f"{path}: not UTF-8 text (it looks like {guess}){hint}") from None


def read_text(path: Path, data: bytes, kind: str) -> Document:
    return Document(decode_text(data, path), kind)
