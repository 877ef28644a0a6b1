"""The chat page in a real browser (headless Chromium): ``pylampe serve`` on a free loopback
port with the tiny model and an API key; the page asks for the key, reads a PDF whose pass key
is on page 2, streams answers, shows each turn's numbers, stops a long answer, keeps the
conversation across a reload, and shows documents and answers with HTML in them as text.

The tiny model's answers are random words: the test checks what the page does with them,
not what they say.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Tuple

import pytest

from browser import chromium, set_dark
from document_files import write_pdf
from server_process import ServerProcess, document

KEY = "sesame"
N_CTX = 4096
WAIT_S = 30.0
# Settings the page keeps in localStorage: short greedy answers.
SETTINGS = {"maxTokens": 24, "temperature": 0, "theme": "auto", "model": ""}
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 1"> **bold**'


@pytest.fixture(scope="module")
def server(tiny_llama_f32: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web")
    # n_batch 64: a long document's read advances the progress bar in many steps
    proc = ServerProcess(["-m", str(tiny_llama_f32), "-c", str(N_CTX), "-t", "2", "--n_batch", "64", "--api-key", KEY,
                          "--doc-cache", str(tmp / "cache")], tmp / "serve.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def page(server: ServerProcess) -> Iterator[Any]:
    chrome = chromium()
    try:
        chrome.get(server.base + "/")
        chrome.execute_script("localStorage.clear(); sessionStorage.clear();"
                              f"localStorage.setItem('pylampe.settings.v1', {json.dumps(json.dumps(SETTINGS))});")
        chrome.get(server.base + "/")
        yield chrome
    except BaseException:
        print(server.log())
        raise
    finally:
        chrome.quit()


def wait(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def by_id(chrome: Any, element_id: str) -> Any:
    return chrome.find_element("id", element_id)


def turns(chrome: Any) -> list:
    return chrome.find_elements("css selector", "#turns > li")


def ask(chrome: Any, question: str) -> Any:
    """Type the question and press Enter; returns the new turn's element once it is answered."""
    from selenium.webdriver.common.keys import Keys

    before = len(turns(chrome))
    box = by_id(chrome, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait(lambda: len(turns(chrome)) == before + 1, "the question on the page")
    return turns(chrome)[-1]


def answered(turn: Any) -> bool:
    return turn.get_attribute("data-state") == "done"


def stats(turn: Any) -> str:
    return turn.find_element("css selector", ".stats").text


def reused(turn: Any) -> int:
    text = stats(turn)
    return int(text.split("tokens: ")[1].split(" reused")[0].replace(",", ""))


def document_tokens(model: Path, pdf: Path) -> int:
    """What the first question's prompt starts with: the document as the server lays it out."""
    from pylampe import Llama
    from pylampe.conversation import document_prefix
    from pylampe.documents import read_document

    vocab = Llama(str(model), vocab_only=True, verbose=False)
    try:
        return len(document_prefix(vocab, read_document(pdf).text))
    finally:
        vocab.close()


def test_chat_about_a_pdf(page: Any, server: ServerProcess, tiny_llama_f32: Path, tmp_path: Path) -> None:
    chrome = page
    # --api-key: the page asks for it
    dialog = wait(lambda: by_id(chrome, "key-dialog").get_attribute("open") is not None, "the API key dialog")
    assert dialog
    by_id(chrome, "key").send_keys(KEY + "\n")
    wait(lambda: "context 4,096 tokens" in by_id(chrome, "model-info").text, "the model's description")
    assert "LaMPE on" in by_id(chrome, "model-info").text

    # a PDF with the pass key on page 2, chosen with the file picker
    pdf = write_pdf(tmp_path / "report.pdf", pages=5, key_page=2)
    by_id(chrome, "file").send_keys(str(pdf))
    card = wait(lambda: by_id(chrome, "document-card").is_displayed() and by_id(chrome, "document-card"),
                "the document card")
    expected = document_tokens(tiny_llama_f32, pdf)
    facts = by_id(chrome, "document-facts")
    assert int(facts.get_attribute("data-tokens")) == expected
    assert f"5 pages" in facts.text and f"{expected:,} tokens ({expected / 64:.1f} × T)" in facts.text
    assert by_id(chrome, "document-read").get_attribute("data-how") == "read"
    assert "report.pdf" in card.text and "PDF" in card.text
    assert "The pass key is 71432" in by_id(chrome, "document-text").get_attribute("textContent")

    # the answer streams in: its text grows in several steps before the turn is done
    chrome.execute_script("""
        window.__lengths = [];
        new MutationObserver(() => {
          const a = document.querySelector('#turns > li:last-child .answer');
          if (a) window.__lengths.push(a.textContent.length);
        }).observe(document.getElementById('turns'), {subtree: true, childList: true, characterData: true});""")
    first = ask(chrome, "What is the pass key?")
    wait(lambda: answered(first), "the first answer")
    lengths = [n for n in chrome.execute_script("return window.__lengths") if n > 0]
    assert len(set(lengths)) >= 2, lengths
    assert first.find_element("css selector", ".question").text == "What is the pass key?"
    # the document was read with the upload: the first question reuses all of it
    assert reused(first) == expected, stats(first)
    assert "first token" in stats(first) and "tokens/s" in stats(first)
    assert "LaMPE L " in stats(first) and ", M " in stats(first)

    second = ask(chrome, "And on which page is it?")
    wait(lambda: answered(second), "the second answer")
    assert reused(second) > expected, stats(second)

    # Stop during a long answer. The tiny model soon writes an end of text, and some of its
    # words are bytes of no character (which llama-cpp-python holds back): both are made
    # impossible for this one request, so that the answer runs to max_tokens.
    banned = {str(t): -100 for t in range(2, 259)} | {"422": -100, "423": -100}
    chrome.execute_script("""
        const bias = arguments[0];
        const original = window.fetch;
        window.__restoreFetch = () => { window.fetch = original; };
        window.fetch = (url, options) => {
          if (String(url).endsWith('chat/completions')) {
            options = {...options, body: JSON.stringify({...JSON.parse(options.body), logit_bias: bias,
                                                         max_tokens: 3000})};
          }
          return original(url, options);
        };""", banned)
    long = ask(chrome, "Tell me everything.")
    wait(lambda: len(long.find_element("css selector", ".answer").text) > 20, "the long answer's start")
    by_id(chrome, "stop").click()
    stopped_at = time.monotonic()
    wait(lambda: answered(long), "the stopped answer", timeout=10)
    assert "stopped" in stats(long)
    chrome.execute_script("window.__restoreFetch()")
    # the model is free at once: the next question is answered
    after = ask(chrome, "Thanks.")
    wait(lambda: answered(after), "the answer after Stop", timeout=15)
    assert "stopped" not in stats(after) and "first token" in stats(after)
    assert time.monotonic() - stopped_at < 15

    # a reload finds the conversation (and the key, kept for the tab)
    chrome.refresh()
    wait(lambda: len(turns(chrome)) == 4 and by_id(chrome, "document-card").is_displayed(), "the conversation")
    assert by_id(chrome, "key-dialog").get_attribute("open") is None
    assert [t.find_element("css selector", ".question").text for t in turns(chrome)] == [
        "What is the pass key?", "And on which page is it?", "Tell me everything.", "Thanks."]
    assert "stopped" in stats(turns(chrome)[2])

    # New conversation: empty, and a question without a document works
    by_id(chrome, "new-conversation").click()
    wait(lambda: not turns(chrome) and not by_id(chrome, "document-card").is_displayed(), "an empty page")
    plain = ask(chrome, "hello")
    wait(lambda: answered(plain), "a plain answer")
    assert "reused" in stats(plain)


def test_html_shows_as_text(page: Any, server: ServerProcess, tmp_path: Path) -> None:
    """A document, a question and an answer holding <script> and <img onerror> are shown as
    those characters: nothing runs, no element is made from them."""
    chrome = page
    if chrome.execute_script("return document.body.dataset.ready") != "true":
        pytest.skip("needs the page of test_chat_about_a_pdf")
    text = tmp_path / "notes.html.txt"  # text, whatever its name says
    text.write_text(f"Notes.\n\n{HOSTILE}\n", encoding="utf-8")
    by_id(chrome, "file").send_keys(str(text))
    wait(lambda: HOSTILE in by_id(chrome, "document-text").get_attribute("textContent"), "the document text")
    conversation = json.loads(chrome.execute_script("return localStorage.getItem('pylampe.conversation.v1')"))
    conversation["turns"] = [{"question": HOSTILE, "answer": f"{HOSTILE}\n\n[a link](javascript:alert(1)) and "
                              "[another](https://example.org/)", "finished": True}]
    chrome.execute_script("localStorage.setItem('pylampe.conversation.v1', arguments[0])", json.dumps(conversation))
    chrome.refresh()
    wait(lambda: len(turns(chrome)) == 1, "the stored turn")
    turn = turns(chrome)[0]
    assert turn.find_element("css selector", ".question").text == HOSTILE
    answer = turn.find_element("css selector", ".answer")
    assert "<script>window.__pwned = 1</script>" in answer.text and 'onerror="window.__pwned = 1"' in answer.text
    assert answer.find_element("css selector", "strong").text == "bold"  # Markdown still works
    links = answer.find_elements("css selector", "a")
    assert [a.get_attribute("href") for a in links] == ["https://example.org/"]
    assert links[0].get_attribute("rel") == "noopener noreferrer nofollow"
    assert not chrome.find_elements("css selector", "main script, main img, main iframe")
    assert chrome.execute_script("return window.__pwned") is None


def test_progress_bar(page: Any, tmp_path: Path) -> None:
    """While a long document is read, the bar shows the server's count of tokens evaluated."""
    if page.execute_script("return document.body.dataset.ready") != "true":
        pytest.skip("needs the page of test_chat_about_a_pdf")
    page.execute_script("""
        window.__progress = [];
        new MutationObserver(() => window.__progress.push(document.getElementById('progress-text').textContent))
          .observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});""")
    book = tmp_path / "book.txt"
    book.write_text(document(3500, seed=7), encoding="utf-8")
    by_id(page, "file").send_keys(str(book))
    wait(lambda: by_id(page, "document-name").text == "book.txt", "the long document")
    total = int(by_id(page, "document-facts").get_attribute("data-tokens"))
    seen = page.execute_script("return window.__progress")
    counts = [text for text in seen if re.search(r"Reading book\.txt: [\d,]+ of [\d,]+ tokens", text)]
    assert counts, seen
    done, of = (int(n.replace(",", "")) for n in re.search(r"([\d,]+) of ([\d,]+)", counts[-1]).groups())
    assert 0 < done <= of <= total, counts
    assert by_id(page, "progress").is_displayed() is False


def test_markdown(page: Any) -> None:
    """The page's Markdown renderer: the constructs chat models write."""
    source = ("# Title\n\nSome *em*, **strong**, `code` and ~~gone~~.\n\n- one\n- two\n  - nested\n\n"
              "1. first\n2. second\n\n> quoted\n\n```python\nprint('<b>')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n---\n"
              "line one\nline two")
    html = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./ui/static/markdown.js').then((m) => {
          const div = document.createElement('div');
          div.append(m.render(arguments[0]));
          done(div.innerHTML);
        });""", source)
    for fragment in ("<h1>Title</h1>", "<em>em</em>", "<strong>strong</strong>", "<code>code</code>",
                     "<del>gone</del>", "<li>one</li>", "<ul><li>nested</li></ul>", "<ol><li>first</li>",
                     "<blockquote><p>quoted</p></blockquote>",
                     '<pre><code data-lang="python">print(\'&lt;b&gt;\')</code></pre>',
                     "<th>a</th>", "<td>2</td>", "<hr>", "line one<br>line two"):
        assert fragment in html, (fragment, html)


def luminances(chrome: Any) -> Tuple[float, float]:
    """The relative luminance of the page's background and of its text."""
    return tuple(chrome.execute_script("""
        const lum = (c) => { const [r, g, b] = c.match(/\\d+/g).map(Number).map((v) => v / 255);
                             return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        const s = getComputedStyle(document.body);
        return [lum(s.backgroundColor), lum(s.color)];"""))


def test_phone_width_and_dark_mode(server: ServerProcess) -> None:
    """At a phone's width nothing is wider than the screen; the dark scheme is dark and readable."""
    chrome = chromium(width=390, height=844, dark=True)
    try:
        chrome.get(server.base + "/")
        chrome.execute_script(f"sessionStorage.setItem('pylampe.key', '{KEY}')")
        chrome.get(server.base + "/")
        wait(lambda: chrome.execute_script("return document.body.dataset.ready") == "true", "the page")
        assert chrome.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert by_id(chrome, "question").is_displayed() and by_id(chrome, "attach").is_displayed()
        bg, fg = luminances(chrome)
        assert bg < 0.15 and fg > 0.7, (bg, fg)
        set_dark(chrome, False)
        bg, fg = luminances(chrome)
        assert bg > 0.9 and fg < 0.2, (bg, fg)
    finally:
        chrome.quit()
