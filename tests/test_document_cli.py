"""Documents through the CLI: chat -f a PDF says what it read and reads it once (the second session
restores it, generate -f shares the entry), bad documents and contexts too large for this machine
get one line and exit 1, and pylampe cache list|clear."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List

import pytest

from document_files import truncate, write_docx, write_epub, write_html, write_pdf, write_scanned_pdf
from server_process import free_port, pylampe_command
from test_cli import assert_one_error

QUESTION = "what is the pass key\n"


def pylampe(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([pylampe_command(), *args], input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pdf(tmp_path_factory.mktemp("docs") / "book.pdf", pages=8, key_page=5)


def chat(model: Path, doc: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    return pylampe("chat", "-m", str(model), "-f", str(doc), "--doc-cache", str(cache), "-n", "6", "--stats",
                   *extra, stdin=QUESTION)


def lines(run: subprocess.CompletedProcess, prefix: str) -> List[str]:
    return [line for line in run.stderr.splitlines() if line.startswith(prefix)]


def test_a_pdf_is_read_once_then_restored(tiny_llama_f32: Path, book: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = chat(tiny_llama_f32, book, cache)
    assert first.returncode == 0, first.stderr
    said = lines(first, "book.pdf: ")
    assert len(said) == 1 and re.fullmatch(
        r"book\.pdf: 8 pages, \d+ words, (\d+) tokens \(\d+\.\d T\); context [\d,]+; KV \d+ [KM]iB f16", said[0])
    n = re.search(r"(\d+) tokens", said[0]).group(1)
    assert lines(first, f"stats: document: {n} tokens read in ") and "saved to the document cache" in first.stderr

    second = chat(tiny_llama_f32, book, cache)
    assert second.returncode == 0, second.stderr
    assert lines(second, f"stats: document: {n} tokens restored from cache in ")
    assert second.stdout == first.stdout  # greedy: the same answer
    turn = re.search(r"stats: turn 1: prompt \d+ tokens \((\d+) reused", second.stderr)
    assert turn and turn.group(1) == n  # the question only was evaluated

    # generate --chat with the same document (and the question after it) uses the same entry
    gen = pylampe("generate", "--chat", "-m", str(tiny_llama_f32), "-f", str(book), "--question", "what is it",
                  "--doc-cache", str(cache), "-n", "4", "--stats", "--no-progress")
    assert gen.returncode == 0, gen.stderr
    assert lines(gen, f"document: {n} tokens restored from cache")
    assert len(list(cache.glob("*.kv"))) == 1

    # another KV type is another entry: never the f16 state
    f32 = chat(tiny_llama_f32, book, cache, "--cache-type-k", "f32", "--cache-type-v", "f32")
    assert f32.returncode == 0 and "tokens read in" in f32.stderr

    listed = pylampe("cache", "list", "--doc-cache", str(cache))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2 and all("book.pdf" in r and "llama-f32.gguf" in r for r in rows)
    assert {r.split()[5] for r in rows} == {"f16", "f32"}
    cleared = pylampe("cache", "clear", "--doc-cache", str(cache))
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 2 documents")
    assert list(cache.glob("*.kv")) == []


def test_a_damaged_entry_warns_once_and_is_rebuilt(tiny_llama_f32: Path, book: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert chat(tiny_llama_f32, book, cache).returncode == 0
    entry = next(cache.glob("*.kv"))
    entry.write_bytes(entry.read_bytes()[:-1000])
    run = chat(tiny_llama_f32, book, cache)
    assert run.returncode == 0, run.stderr
    warnings = lines(run, "pylampe: warning: ")
    assert len(warnings) == 1 and "truncated" in warnings[0] and "reading the document again" in warnings[0]
    assert "saved to the document cache" in run.stderr
    assert "restored from cache" in chat(tiny_llama_f32, book, cache).stderr


def test_no_doc_cache_writes_nothing(tiny_llama_f32: Path, book: Path, tmp_path: Path) -> None:
    run = chat(tiny_llama_f32, book, tmp_path / "cache", "--no-doc-cache")
    assert run.returncode == 0 and "tokens read in" in run.stderr and "saved" not in run.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kind", ["epub", "docx", "html"])
def test_other_documents(tiny_llama_f32: Path, tmp_path: Path, kind: str) -> None:
    doc = {"epub": write_epub, "docx": write_docx, "html": write_html}[kind](tmp_path / f"doc.{kind}")
    run = chat(tiny_llama_f32, doc, tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    assert lines(run, f"doc.{kind}: ") and len(run.stdout.splitlines()) == 1


@pytest.mark.parametrize("command", ["chat", "generate"])
@pytest.mark.parametrize("make, message", [
    (lambda d: write_pdf(d / "enc.pdf", encrypt="secret"), r"enc\.pdf: the PDF is encrypted with a password"),
    (lambda d: write_scanned_pdf(d / "scan.pdf"), r"no text found: a scanned PDF needs OCR first"),
    (lambda d: truncate(write_docx(d / "full.docx"), d / "cut.docx"), r"cut\.docx: truncated or corrupt DOCX"),
    (lambda d: _write(d / "photo.png", b"\x89PNG\r\n\x1a\n" + bytes(64)), r"unsupported type: a PNG image"),
    (lambda d: _write(d / "latin.txt", "Noël à Paris, très cher. ".encode("cp1252") * 20), r"not UTF-8 text"),
])
def test_bad_documents_get_one_line_and_exit_1(tiny_llama_f32: Path, tmp_path: Path, command: str, make,
                                               message: str) -> None:
    args = ["-p", "hi"] if command == "generate" else []
    run = pylampe(command, "-m", str(tiny_llama_f32), "-f", str(make(tmp_path)), *args, stdin=QUESTION)
    assert_one_error(run, 1, message)


def test_a_context_this_machine_cannot_hold_is_refused(tiny_llama_f32: Path, book: Path) -> None:
    run = pylampe("chat", "-m", str(tiny_llama_f32), "-f", str(book), "-c", "2000000000", stdin=QUESTION)
    assert_one_error(run, 1, r"a context of 2,000,000,000 tokens needs [\d.]+ GiB of KV cache \(f16/f16\) .* "
                     r"but [\d.]+ [GM]iB is available: lower -c, or .*--cache-type-k q8_0")


def test_a_server_context_this_machine_cannot_hold_is_refused(tiny_llama_f32: Path) -> None:
    run = pylampe("serve", "-m", str(tiny_llama_f32), "-c", "2000000000", "--port", str(free_port()))
    assert_one_error(run, 1, r"model llama-f32: a context of 2,000,000,000 tokens needs .* is available: lower -c")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
