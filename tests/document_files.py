"""Real document files written by real tools, for the conversion tests: PDFs by reportlab, a
DOCX by python-docx, an EPUB as the EPUB 3 specification lays out its ZIP, an HTML page."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import List, Optional

PASS_KEY = "71432"


def page_text(page: int) -> List[str]:
    """The lines of page ``page`` (1-based): a header naming it and some words."""
    return [f"Page {page} begins here.", "The grass is green and the sky is blue.", f"Page {page} ends here."]


def write_pdf(path: Path, pages: int = 5, key_page: int = 3, encrypt: Optional[str] = None,
              owner_only: bool = False) -> Path:
    """A text PDF of ``pages`` pages; page ``key_page`` also says the pass key. ``encrypt``: a user
    password (``owner_only``: an owner password, the user password empty)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfgen.canvas import Canvas

    encryption = None
    if encrypt is not None:
        encryption = StandardEncryption("" if owner_only else encrypt, ownerPassword=encrypt + "-owner",
                                        canPrint=0, canCopy=0)
    c = Canvas(str(path), pagesize=A4, encrypt=encryption)
    for page in range(1, pages + 1):
        lines = page_text(page)
        if page == key_page:
            lines.insert(1, f"The pass key is {PASS_KEY}. Remember it.")
        y = 800
        for line in lines:
            c.drawString(72, y, line)
            y -= 20
        c.showPage()
    c.save()
    return path


def write_scanned_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages are only pictures (filled shapes): no text layer, as a scan."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    c = Canvas(str(path), pagesize=A4)
    for _ in range(pages):
        for i in range(10):
            c.rect(72, 700 - 30 * i, 400, 12, fill=1)
        c.showPage()
    c.save()
    return path


def write_docx(path: Path) -> Path:
    """A Word document: a heading, paragraphs, the pass key in a table, a closing paragraph."""
    import docx

    d = docx.Document()
    d.add_heading("A report", level=1)
    d.add_paragraph("The first paragraph says hello.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "name", "value"
    table.cell(1, 0).text, table.cell(1, 1).text = "pass key", PASS_KEY
    d.add_paragraph("The last paragraph says goodbye.")
    d.save(str(path))
    return path


_CHAPTER = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title>
<style>p {{ margin: 0 }}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def write_epub(path: Path) -> Path:
    """An EPUB 3 book of three chapters whose spine order (one, two, three) differs from the
    order of their files in the ZIP; chapter two holds the pass key."""
    chapters = {
        "text/c3.xhtml": ("Chapter Three", "<p>The end of the story.</p>"),
        "text/c1.xhtml": ("Chapter One", "<p>It was a dark night.</p>"),
        "text/c2.xhtml": ("Chapter Two", f"<p>The pass key is <b>{PASS_KEY}</b>.</p><p>Keep it safe.</p>"),
    }
    opf = """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">test-book</dc:identifier>
<dc:title>A test book</dc:title><dc:language>en</dc:language></metadata>
<manifest>
<item id="c1" href="text/c1.xhtml" media-type="application/xhtml+xml"/>
<item id="c2" href="text/c2.xhtml" media-type="application/xhtml+xml"/>
<item id="c3" href="text/c3.xhtml" media-type="application/xhtml+xml"/>
</manifest>
<spine><itemref idref="c1"/><itemref idref="c2"/><itemref idref="c3"/></spine>
</package>"""
    container = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)  # first, stored
        z.writestr("META-INF/container.xml", container, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/content.opf", opf, compress_type=zipfile.ZIP_DEFLATED)
        for name, (title, body) in chapters.items():
            z.writestr(f"OEBPS/{name}", _CHAPTER.format(title=title, body=body), compress_type=zipfile.ZIP_DEFLATED)
    return path


def write_html(path: Path) -> Path:
    """A saved web page: a title, navigation, a script, the article with the pass key, a list."""
    path.write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>The page title</title>
<script>var hidden = "not text";</script><style>body {{ color: red }}</style></head>
<body><nav><a href="/">Home</a></nav>
<article><h1>An article</h1><p>The first   paragraph
spans lines.</p><p>The pass key is {PASS_KEY}.</p>
<ul><li>one item</li><li>another item</li></ul></article></body></html>
""", encoding="utf-8")
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
