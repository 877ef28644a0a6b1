"""The README's screenshots of the chat page: ``pylampe serve`` with the default model
(SmolLM2-135M-Instruct, T = 8192), a PDF longer than T with a pass key in it, two
questions; the page in light and dark colours at desktop width and at a phone's width.

    .venv/bin/python scripts/web-screenshots.py            # writes docs/chat-page-*.png

Uses the test suite's helpers (tests/browser.py, tests/server_process.py): Debian's
chromium and chromium-driver, driven by Selenium.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium, set_dark  # noqa: E402
from server_process import ServerProcess  # noqa: E402

PASS_KEY = "68315"
# SmolLM2-135M answers these from the report; it misses the pass key in a chat (a larger model finds it)
QUESTIONS = ("What did the committee agree to?", "What colour is the sky in the report?")
SETTINGS = {"maxTokens": 60, "temperature": 0, "theme": "auto", "model": ""}
FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
          "The committee met on Tuesday and agreed to review the figures next quarter. ").split(". ")


def write_report(path: Path, pages: int, key_page: int, lines_per_page: int = 46) -> Path:
    """A PDF of filler sentences (the haystack of pass-key tests); page ``key_page`` holds the pass key."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    rng = random.Random(0)
    c = Canvas(str(path), pagesize=A4)
    for page in range(1, pages + 1):
        y = 800
        c.drawString(72, y, f"Quarterly report, page {page}")
        for line in range(lines_per_page):
            y -= 16
            text = (f"The pass key is {PASS_KEY}. Remember it. {PASS_KEY} is the pass key."
                    if page == key_page and line == 20 else ". ".join(rng.choice(FILLER) for _ in range(4)) + ".")
            c.drawString(72, y, text[:95])
        c.showPage()
    c.save()
    return path


def wait(check: Callable[[], Any], what: str, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10, help="the report's pages (10: about 1.2 T)")
    parser.add_argument("--key-page", type=int, default=8,
                        help="the page of the pass key (SmolLM2-135M finds it near the end, not at the start)")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = write_report(Path(tmp) / "quarterly-report.pdf", args.pages, args.key_page)
        server = ServerProcess(["-c", "16384", "-t", "2", "--doc-cache", str(Path(tmp) / "cache")],
                               Path(tmp) / "serve.log")
        chrome = chromium(1200, 860)
        try:
            chrome.get(server.base + "/")
            chrome.execute_script("localStorage.clear(); localStorage.setItem('pylampe.settings.v1', arguments[0])",
                                  json.dumps(SETTINGS))
            chrome.get(server.base + "/")
            wait(lambda: chrome.execute_script("return document.body.dataset.ready") == "true", "the page")
            chrome.find_element("id", "file").send_keys(str(report))
            wait(lambda: chrome.find_element("id", "document-card").is_displayed(), "the document")
            for question in QUESTIONS:
                box = chrome.find_element("id", "question")
                box.send_keys(question + "\n")
                wait(lambda: chrome.execute_script(
                    "const t = document.querySelectorAll('#turns > li');"
                    "return t.length && t[t.length - 1].dataset.state === 'done'"), "an answer")
                wait(lambda: chrome.execute_script("return !document.body.dataset.busy"), "the page to settle")
            chrome.execute_script("document.activeElement.blur()")
            args.out.mkdir(parents=True, exist_ok=True)
            for name, dark in (("light", False), ("dark", True)):
                set_dark(chrome, dark)
                time.sleep(0.3)
                chrome.save_screenshot(str(args.out / f"chat-page-{name}.png"))
            chrome.set_window_size(390, 844)
            set_dark(chrome, False)
            time.sleep(0.3)
            chrome.save_screenshot(str(args.out / "chat-page-phone.png"))
            print(chrome.find_element("id", "document-facts").text)
            print(chrome.find_element("id", "document-read").text)
            for turn in chrome.find_elements("css selector", "#turns > li"):
                print(turn.text.replace("\n", " | "))
        finally:
            chrome.quit()
            server.stop()


if __name__ == "__main__":
    main()
