"""The server reuses documents: a request whose prompt starts with a cached document restores it
(users alternating between two documents), and a restarted server finds it on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from server_process import ServerProcess, document

QUESTION = "what is the key"


def start(model: Path, cache: Path, log: Path) -> ServerProcess:
    return ServerProcess(["-m", str(model), "-c", "1024", "-t", "2", "--cache-type-k", "f32", "--cache-type-v",
                          "f32", "--doc-cache", str(cache)], log)


@pytest.fixture(scope="module")
def docs() -> Tuple[str, str]:
    return document(400, seed=21), document(420, seed=22)


def ask(server: ServerProcess, doc: str, chat: bool = True) -> Tuple[str, Dict[str, Any]]:
    if chat:
        status, r = server.post_json("/v1/chat/completions", {
            "messages": [{"role": "user", "content": f"{doc}\n\n{QUESTION}"}], "max_tokens": 6,
            "temperature": 0, "repeat_penalty": 1.0})
        text = r["choices"][0]["message"]["content"] if status == 200 else r
    else:
        status, r = server.post_json("/v1/completions", {
            "prompt": f"{doc}\n\nQuestion: {QUESTION}\nAnswer:", "max_tokens": 6, "temperature": 0,
            "repeat_penalty": 1.0})
        text = r["choices"][0]["text"] if status == 200 else r
    assert status == 200, text
    _, state = server.request("GET", "/extras/lampe")
    return text, state


def test_alternating_documents_restore_instead_of_reading(tiny_llama_f32: Path, docs: Tuple[str, str],
                                                          tmp_path: Path) -> None:
    a, b = docs
    cache = tmp_path / "cache"
    server = start(tiny_llama_f32, cache, tmp_path / "serve.log")
    try:
        answer_a, state = ask(server, a)
        read_a = state["last_document"]
        assert read_a["how"] == "read" and read_a["saved"] and read_a["n_tokens"] > 256
        assert state["last_request"]["reused_tokens"] == read_a["n_tokens"]  # the question only
        _, state = ask(server, b)
        assert state["last_document"]["how"] == "read"
        again, state = ask(server, a)  # the KV cache held b: a comes back from disk
        assert state["last_document"]["how"] == "restored" and again == answer_a
        assert state["last_request"]["prefill_tokens"] < 20
        assert state["ubatches"]["exact_beyond_T"] == 0
        _, state = ask(server, a)  # a is in the KV cache already
        assert state["last_document"]["how"] == "kept"
        _, state = ask(server, b, chat=False)  # a completion's document is its own entry
        assert state["last_document"]["how"] == "read"
        assert len(list(cache.glob("*.kv"))) == 3
    finally:
        server.stop()

    restarted = start(tiny_llama_f32, cache, tmp_path / "serve2.log")
    try:
        answer, state = ask(restarted, a)
        assert state["last_document"]["how"] == "restored" and answer == answer_a
    finally:
        restarted.stop()
