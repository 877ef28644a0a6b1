"""Documents in: PDF, EPUB, DOCX, HTML and text files made by real tools, converted in order;
damaged, encrypted, scanned and foreign files refused with one line."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from document_files import (
    PASS_KEY, page_text, truncate, write_docx, write_epub, write_html, write_pdf, write_scanned_pdf,
)
from pylampe.documents import DocumentError, read_document


def test_pdf_pages_in_order_with_the_key_on_its_page(tmp_path: Path) -> None:
    doc = read_document(write_pdf(tmp_path / "book.pdf", pages=6, key_page=4))
    assert (doc.kind, doc.parts, doc.part_name) == ("PDF", 6, "pages")
    starts = [doc.text.index(page_text(p)[0]) for p in range(1, 7)]
    assert starts == sorted(starts)
    key = doc.text.index(PASS_KEY)
    assert starts[3] < key < starts[4]  # on page 4, not elsewhere
    assert doc.text.count(PASS_KEY) == 1
    assert doc.describe().startswith("6 pages, ")


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    doc = read_document(write_pdf(tmp_path / "locked.pdf", encrypt="secret", owner_only=True))
    assert PASS_KEY in doc.text


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    doc = read_document(write_epub(tmp_path / "book.epub"))
    assert (doc.kind, doc.parts, doc.part_name) == ("EPUB", 3, "chapters")
    one, key, three = (doc.text.index(s) for s in ("Chapter One", PASS_KEY, "Chapter Three"))
    assert one < doc.text.index("Chapter Two") < key < three
    assert "margin" not in doc.text  # the stylesheet is not text


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    doc = read_document(write_docx(tmp_path / "report.docx"))
    assert doc.kind == "DOCX"
    hello, key, bye = (doc.text.index(s) for s in ("hello", f"pass key | {PASS_KEY}", "goodbye"))
    assert doc.text.startswith("A report") and hello < key < bye


def test_html_text_without_script_or_style(tmp_path: Path) -> None:
    doc = read_document(write_html(tmp_path / "page.html"))
    assert doc.kind == "HTML"
    assert doc.text.startswith("The page title")
    assert "The first paragraph spans lines." in doc.text
    assert f"The pass key is {PASS_KEY}." in doc.text and "- one item\n- another item" in doc.text
    assert "hidden" not in doc.text and "color" not in doc.text


def test_text_markdown_and_byte_order_marks(tmp_path: Path) -> None:
    md = tmp_path / "notes.md"
    md.write_text("# Notes\n\nCafé au lait.\n", encoding="utf-8")
    assert read_document(md).kind == "Markdown" and "Café" in read_document(md).text
    utf16 = tmp_path / "wide.txt"
    utf16.write_text("Grüße aus Köln", encoding="utf-16")
    assert read_document(utf16).text == "Grüße aus Köln"


@pytest.mark.parametrize("make, message", [
    (lambda d: write_pdf(d / "enc.pdf", encrypt="secret"), r"enc\.pdf: the PDF is encrypted with a password"),
    (lambda d: write_scanned_pdf(d / "scan.pdf"), r"scan\.pdf: no text found: a scanned PDF needs OCR first"),
    (lambda d: truncate(write_pdf(d / "full.pdf"), d / "cut.pdf"), r"cut\.pdf: truncated or corrupt PDF"),
    (lambda d: truncate(write_docx(d / "full.docx"), d / "cut.docx"), r"cut\.docx: truncated or corrupt DOCX"),
    (lambda d: truncate(write_epub(d / "full.epub"), d / "cut.epub"), r"cut\.epub: truncated or corrupt EPUB"),
    (lambda d: _write(d / "photo.jpg", b"\xff\xd8\xff\xe0" + bytes(200)), r"photo\.jpg: unsupported type: a JPEG image"),
    (lambda d: _write(d / "old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200)), r"unsupported type: a Word 97-2003"),
    (lambda d: _write(d / "blob.bin", bytes(range(256)) * 4), r"blob\.bin: unsupported type: a binary file"),
    (lambda d: _zip(d / "data.zip"), r"unsupported type: a ZIP archive that is neither EPUB nor DOCX"),
    (lambda d: _write(d / "latin.txt", "Ça coûte très cher à Noël, déjà vu. ".encode("cp1252") * 20),
     r"latin\.txt: not UTF-8 text \(it looks like \S+\): convert it with iconv -f \S+ -t UTF-8"),
    (lambda d: d / "missing.pdf", r"cannot read .*missing\.pdf: No such file"),
])
def test_bad_input_is_one_line(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as e:
        read_document(make(tmp_path))
    assert "\n" not in str(e.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "hello")
    return path


def test_an_eval_haystack_can_be_a_document(tmp_path: Path) -> None:
    from pylampe.eval.haystack import load_haystack

    haystack = load_haystack(str(write_epub(tmp_path / "book.epub")))
    assert haystack.name == "book.epub" and PASS_KEY in haystack.text(haystack.max_units)
