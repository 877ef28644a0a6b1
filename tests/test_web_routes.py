"""The chat page's server side, over HTTP: its files (self-contained, under a strict
Content-Security-Policy), the API key, uploads (size limit, typed by content, every format
``-f`` reads), the prefill progress the page polls, and Stop during a document's read."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from document_files import PASS_KEY, write_docx, write_epub, write_pdf
from server_process import HOST, ServerProcess, document, pylampe_command

KEY = "sesame"
AUTH = {"Authorization": f"Bearer {KEY}"}
STATIC = Path(__file__).resolve().parent.parent / "pylampe" / "server" / "static"
# An absolute URL where a page would load something from: src/href attributes, CSS url() and
# @import, JavaScript imports and fetches.
_REMOTE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']|url\(\s*["']?|@import\s+["']|\bfrom\s+["']|import\(\s*["']|"""
                     r"""fetch\(\s*["'`])(?:[a-z]+:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def server(tiny_llama_f32: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web-routes")
    # n_batch 32: a document's read reports its progress in many steps, and takes long enough to be stopped
    proc = ServerProcess(["-m", str(tiny_llama_f32), "-c", "4096", "-t", "2", "--n_batch", "32", "--api-key", KEY,
                          "--upload-limit-mb", "1", "--doc-cache", str(tmp / "cache")], tmp / "serve.log")
    try:
        yield proc
    finally:
        proc.stop()


def upload(server: ServerProcess, data: bytes, name: str, headers: Optional[Dict[str, str]] = None,
           query: str = "") -> Tuple[int, Any]:
    return server.request("POST", f"/ui/documents?name={name}{query}", data,
                          headers={**AUTH, "Content-Type": "application/octet-stream", **(headers or {})})


def test_page_and_its_files(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    conn.request("GET", "/")
    r = conn.getresponse()
    page = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    csp = r.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert "<script" not in page.replace('<script type="module" src="ui/static/app.js"></script>', "")
    for name, kind in (("app.js", "javascript"), ("markdown.js", "javascript"), ("style.css", "text/css")):
        conn.request("GET", f"/ui/static/{name}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and kind in r.getheader("Content-Type"), name
    conn.close()
    # the API and its documentation are where they were
    assert server.request("GET", "/docs")[0] == 200
    assert server.request("GET", "/v1/models", headers=AUTH)[0] == 200


def test_nothing_is_loaded_from_elsewhere() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "api.js", "markdown.js", "store.js", "style.css"}
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not _REMOTE.search(text), f"{f.name}: {_REMOTE.search(text).group(0)}"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, f.name


def test_api_key(server: ServerProcess) -> None:
    for method, path in (("POST", "/ui/documents?name=a.txt"), ("GET", "/ui/progress"), ("POST", "/ui/stop")):
        status, _ = server.request(method, path, b"hello" if method == "POST" else None)
        assert status == 401, path
    assert server.request("GET", "/")[0] == 200  # the page itself holds nothing secret


def test_formats_typed_by_content(server: ServerProcess, tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "k.pdf", pages=3, key_page=2).read_bytes()
    status, body = upload(server, pdf, "notes.txt")  # a PDF, whatever its name
    assert status == 200, body
    assert (body["kind"], body["parts"], body["name"]) == ("PDF", 3, "notes.txt")
    assert PASS_KEY in body["text"] and body["tokens"] > 0 and body["n_ctx"] == 4096 and body["n_ctx_train"] == 64
    assert body["multiple_of_T"] == round(body["tokens"] / 64, 2) and body["how"] in ("read", "kept", "restored")
    status, body = upload(server, b"plain words, not a PDF", "report.pdf")  # text, whatever its name
    assert status == 200 and body["kind"] == "text", body
    for writer, kind in ((write_docx, "DOCX"), (write_epub, "EPUB")):
        status, body = upload(server, writer(tmp_path / f"doc.{kind.lower()}").read_bytes(), "document")
        assert status == 200 and body["kind"] == kind and PASS_KEY in body["text"], body
    status, body = upload(server, b"<!DOCTYPE html><p>a <script>x()</script>page</p>", "page")
    assert status == 200 and body["kind"] == "HTML" and body["text"] == "a page", body


def test_unreadable_uploads(server: ServerProcess) -> None:
    status, body = upload(server, b"\x89PNG\r\n\x1a\n" + bytes(100), "..%2F..%2Fetc%2Fscan.pdf")
    assert status == 400 and body["error"]["code"] == "unreadable_document"
    assert body["error"]["message"].startswith("scan.pdf: unsupported type: a PNG image"), body
    assert "/tmp" not in body["error"]["message"] and "\n" not in body["error"]["message"]
    status, body = upload(server, b"   \n", "empty.txt")
    assert status == 400 and "empty" in body["error"]["message"], body


def test_upload_limit(server: ServerProcess) -> None:
    big = b"word " * ((1 << 20) // 5 + 10)
    status, body = upload(server, big, "big.txt")
    assert status == 413 and "upload limit of 1 MiB" in body["error"]["message"], body
    # without a Content-Length (chunked), the limit holds while the body arrives
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    conn.request("POST", "/ui/documents?name=big.txt", body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                 headers={**AUTH, "Content-Type": "application/octet-stream"}, encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 413 and "upload limit" in json.loads(r.read())["error"]["message"]
    conn.close()


def test_document_longer_than_the_context(server: ServerProcess) -> None:
    status, body = upload(server, document(5000, seed=3).encode(), "long.txt", query="&max_tokens=100")
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    assert "does not fit the context of 4096 tokens" in body["error"]["message"]


def _poll_progress(server: ServerProcess, seen: List[Dict[str, Any]], until: threading.Event) -> None:
    while not until.is_set():
        seen.append(server.request("GET", "/ui/progress", headers=AUTH)[1])
        time.sleep(0.02)


def test_progress_and_stop_during_a_read(server: ServerProcess) -> None:
    text = document(3000, seed=4).encode()
    seen: List[Dict[str, Any]] = []
    done = threading.Event()
    poller = threading.Thread(target=_poll_progress, args=(server, seen, done))
    poller.start()
    try:
        status, body = upload(server, text, "book.txt")
    finally:
        done.set()
        poller.join()
    assert status == 200 and body["how"] == "read", body
    partial = [p for p in seen if p["active"] and 0 < p["done"] < p["total"]]
    # the prompt evaluated: the document's tokens but the few the KV cache already held (BOS, the role)
    assert partial and body["tokens"] - 16 < partial[-1]["total"] <= body["tokens"], seen[-5:]

    # Stop: only the request's own id stops it; the model is free at once afterwards
    other = document(3000, seed=5).encode()
    result: Dict[str, Any] = {}
    reader = threading.Thread(target=lambda: result.update(
        r=upload(server, other, "other.txt", headers={"X-Pylampe-Request": "page-1"})))
    reader.start()
    deadline = time.monotonic() + 30
    while not server.request("GET", "/ui/progress", headers=AUTH)[1]["active"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.post_json("/ui/stop", {}, headers={**AUTH, "X-Pylampe-Request": "page-2"})[1] == {"stopping": False}
    assert server.post_json("/ui/stop", {}, headers={**AUTH, "X-Pylampe-Request": "page-1"})[1] == {"stopping": True}
    reader.join(timeout=30)
    status, body = result["r"]
    assert status == 409 and body["error"]["code"] == "stopped", body
    status, body = server.post_json("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}],
                                                             "max_tokens": 4}, headers=AUTH)
    assert status == 200 and body["choices"][0]["finish_reason"] in ("stop", "length"), body


def test_no_webui(tiny_llama_f32: Path) -> None:
    from fastapi.testclient import TestClient

    from pylampe.server import LampeModelSettings, LampeServerSettings, create_app

    app = create_app(LampeServerSettings(no_webui=True), [LampeModelSettings(model=str(tiny_llama_f32), n_ctx=256)])
    try:
        client = TestClient(app)
        assert client.get("/").status_code == 404 and client.get("/ui/progress").status_code == 404
        assert client.get("/v1/models").status_code == 200
    finally:
        app.state.proxy.current.close()


def test_flags_in_help() -> None:
    from pylampe.server.settings import DEFAULT_UPLOAD_LIMIT_MB

    run = subprocess.run([pylampe_command(), "serve", "--help"], capture_output=True, text=True, timeout=60)
    help_text = " ".join(run.stdout.split())
    assert "--no-webui" in help_text
    assert f"the largest document file the chat page accepts (default: {DEFAULT_UPLOAD_LIMIT_MB})" in help_text
