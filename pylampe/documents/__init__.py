"""Documents in: PDF, EPUB, DOCX, HTML, Markdown and plain text, as the text a model reads.

    from pylampe.documents import read_document
    doc = read_document("book.pdf")   # doc.text, doc.kind, doc.parts ("212 pages"), doc.words

Every failure is a DocumentError whose message is one line, naming the file
and what to do about it (an encrypted or scanned PDF, a corrupt file, a type
that is not supported, text in another encoding).
"""

from .document import Document, DocumentError
from .read import SUPPORTED, read_document

__all__ = ["SUPPORTED", "Document", "DocumentError", "read_document"]
