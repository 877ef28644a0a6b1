"""A document uploaded by the chat page: received up to a size limit, converted by
``pylampe.documents`` (the converter of ``-f``) and typed by its content, never by its name.

The bytes go to a temporary file without the uploaded name's extension, so ``read_document``
types them by their first bytes (a PDF, a ZIP that is an EPUB or a DOCX, an HTML page) or reads
them as text; a file named ``report.pdf`` that holds text is read as text, and one named
``notes.txt`` that holds a PDF is read as a PDF.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePath
from typing import AsyncIterator

from ..documents import Document, DocumentError, read_document

# What the page shows when the upload has no usable name.
_NO_NAME = "document"


class UploadTooLarge(Exception):
    """The upload is larger than the server's limit."""

    def __init__(self, limit: int):
        super().__init__(f"the document is larger than this server's upload limit of {limit / (1 << 20):g} MiB "
                         "(pylampe serve --upload-limit-mb)")


def display_name(name: str) -> str:
    """The last component of the name the browser sent (no directories), for messages."""
    return PurePath(name.replace("\\", "/")).name.strip() or _NO_NAME


async def receive(body: AsyncIterator[bytes], limit: int, directory: Path) -> Path:
    """Write the request body to a file in ``directory``; UploadTooLarge past ``limit`` bytes."""
    path = directory / "upload"
    size = 0
    with open(path, "wb") as f:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(limit)
            f.write(chunk)
    return path


def convert(path: Path, name: str) -> Document:
    """The document's text; DocumentError (one line, naming ``name``, not the temporary file)."""
    try:
        doc = read_document(path)
    except DocumentError as e:
        raise DocumentError(str(e).replace(str(path), name)) from None
    if not doc.text.strip():
        raise DocumentError(f"{name}: the document is empty")
    return doc


def temporary_directory() -> tempfile.TemporaryDirectory:
    """Where one upload is kept while it is converted (removed afterwards)."""
    return tempfile.TemporaryDirectory(prefix="pylampe-upload-")
