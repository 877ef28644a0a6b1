"""EPUB: a ZIP of XHTML chapters, read in the order of the book's spine.

The standard library reads it (zipfile for the container, ElementTree for
the package document, html_to_text for the chapters): no e-book library is
needed, and the common one (ebooklib) is AGPL.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from typing import Dict, List
from urllib.parse import unquote
from xml.etree import ElementTree

from .document import Document, DocumentError
from .html import html_to_text

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
# fonts are often obfuscated (IDPF/Adobe) in books without DRM: only other encrypted files mean DRM
_FONT_SUFFIXES = (".otf", ".ttf", ".woff", ".woff2")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(book: zipfile.ZipFile, name: str, path: Path) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(book.read(name))
    except KeyError:
        raise DocumentError(f"{path}: not a valid EPUB ({name} is missing)") from None
    except ElementTree.ParseError as e:
        raise DocumentError(f"{path}: corrupt EPUB ({name}: {e})") from None


def _has_drm(book: zipfile.ZipFile, path: Path) -> bool:
    if _ENCRYPTION not in book.namelist():
        return False
    root = _xml(book, _ENCRYPTION, path)
    uris = [el.get("URI", "") for el in root.iter() if _local(el.tag) == "CipherReference"]
    return any(not uri.lower().endswith(_FONT_SUFFIXES) for uri in uris)


def read_epub(path: Path, book: zipfile.ZipFile) -> Document:
    if _has_drm(book, path):
        raise DocumentError(f"{path}: the EPUB is encrypted (DRM): only DRM-free books can be read")
    container = _xml(book, _CONTAINER, path)
    rootfile = next((el.get("full-path") for el in container.iter() if _local(el.tag) == "rootfile"), None)
    if not rootfile:
        raise DocumentError(f"{path}: not a valid EPUB (no package document in {_CONTAINER})")
    package = _xml(book, rootfile, path)
    base = posixpath.dirname(rootfile)
    manifest: Dict[str, str] = {
        el.get("id", ""): el.get("href", "") for el in package.iter() if _local(el.tag) == "item"
    }
    spine = [el.get("idref", "") for el in package.iter() if _local(el.tag) == "itemref"]
    chapters: List[str] = []
    for idref in spine:
        href = manifest.get(idref)
        if not href:
            continue
        name = posixpath.normpath(posixpath.join(base, unquote(href.split("#")[0])))
        try:
            markup = book.read(name).decode("utf-8", errors="replace")
        except KeyError:
            raise DocumentError(f"{path}: not a valid EPUB (the chapter {name} is missing)") from None
        text = html_to_text(markup)
        if text:
            chapters.append(text)
    if not chapters:
        raise DocumentError(f"{path}: no text found in the EPUB")
    return Document("\n\n".join(chapters), "EPUB", len(chapters), "chapters")
