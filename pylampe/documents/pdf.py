"""PDF text with pypdf: the text layer of each page, in page order."""

from __future__ import annotations

import logging
from pathlib import Path

from .document import Document, DocumentError

# pypdf reports recoverable damage through logging; a damaged file is refused here instead.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# the end-of-file marker sits in the last bytes of a complete PDF (after any incremental update)
_EOF_MARKER = b"%%EOF"
_TAIL_BYTES = 2048


def read_pdf(path: Path) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        if _EOF_MARKER not in f.read():
            raise DocumentError(f"{path}: truncated or corrupt PDF (no end-of-file marker)")
    try:
        reader = PdfReader(path)
        # An owner password only restricts printing or copying: the empty user password opens it.
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{path}: the PDF is encrypted with a password: decrypt it first "
                                "(for example qpdf --decrypt --password=PASSWORD in.pdf out.pdf)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (FileNotDecryptedError, DependencyError):
        raise DocumentError(f"{path}: the PDF is encrypted: decrypt it first "
                            "(for example qpdf --decrypt in.pdf out.pdf)") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as e:
        # pypdf raises plain Python errors, too, on malformed objects
        raise DocumentError(f"{path}: corrupt PDF ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise DocumentError(f"{path}: no text found: a scanned PDF needs OCR first "
                            "(for example ocrmypdf in.pdf out.pdf)")
    return Document(text, "PDF", len(pages), "pages")
