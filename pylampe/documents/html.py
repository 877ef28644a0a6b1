"""HTML and XHTML to plain text with the standard library's parser.

Block elements become line breaks, list items get a "- ", table cells are
separated by " | ", scripts and styles are dropped and other whitespace is
collapsed as a browser would (except inside <pre>). The parser is lenient:
broken markup still gives its text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import List

# Paragraph-like elements are separated by a blank line, lines within them by a line break.
_PARAGRAPH = {
    "address", "article", "aside", "blockquote", "body", "div", "dl", "figcaption", "figure", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p", "pre", "section",
    "table", "title", "ul",
}
_LINE = {"br", "dd", "dt", "li", "tr"}
_SKIP = {"script", "style", "noscript", "template", "svg", "head"}
# <title> sits in <head> but says what the page is: kept, as the first line.
_KEEP_IN_HEAD = {"title"}
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_AROUND_BREAKS = re.compile(r"[ \t]*\n[ \t]*")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: List[str] = []
        self.skip = 0  # depth inside _SKIP elements
        self.keep = 0  # depth inside _KEEP_IN_HEAD elements within a skipped one
        self.pre = 0
        self.cells = 0  # cells so far in the current table row

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag in _KEEP_IN_HEAD:
            self.keep += 1
        if tag == "pre":
            self.pre += 1
        self._break(tag, start=True)
        if tag == "li":
            self.out.append("- ")
        elif tag == "tr":
            self.cells = 0
        elif tag in ("td", "th"):
            self.out.append(" | " if self.cells else "")
            self.cells += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _KEEP_IN_HEAD:
            self.keep = max(0, self.keep - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        self._break(tag, start=False)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._break(tag, start=True)

    def _break(self, tag: str, start: bool) -> None:
        """A paragraph is closed by a blank line at both ends; a line element starts a line."""
        if tag in _PARAGRAPH:
            self.out.append("\n\n")
        elif tag in _LINE and start:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip and not self.keep:
            return
        self.out.append(data if self.pre else _SPACES.sub(" ", data))


def html_to_text(markup: str) -> str:
    """The readable text of an HTML or XHTML page, paragraphs separated by blank lines."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    text = _AROUND_BREAKS.sub("\n", "".join(parser.out))
    return _BLANK_LINES.sub("\n\n", text).strip()
