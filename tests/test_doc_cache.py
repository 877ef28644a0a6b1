"""The document cache: a restored document then a question gives the logits of reading it fresh;
damaged, foreign and stale entries are never used; writes are atomic; the size cap evicts the
least recently used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from pylampe import Llama  # first: points llama_cpp at pylampe's library
import llama_cpp
from pylampe.conversation import read_prefix
from pylampe.doc_cache import DocCache, DocStore
from pylampe.doc_cache.fingerprint import model_identity
from gguf_models import write_tiny_llama
from server_process import document

N_CTX = 512
TIGHT = 1e-6  # f32 KV: the same computation, so the same logits; a different L moves them by > 1e-3


def make_llm(model: Path, **kwargs) -> Llama:
    kwargs = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32, **kwargs}
    return Llama(str(model), n_ctx=N_CTX, seed=0, verbose=False, **kwargs)


def doc_and_question(llm: Llama, n_words: int) -> Tuple[List[int], List[int]]:
    prefix = llm.tokenize(document(n_words, seed=3).encode(), add_bos=True, special=True)
    return prefix, llm.tokenize(b" what is the pass key number", add_bos=False, special=True)


def last_logits(llm: Llama) -> np.ndarray:
    """The logits of the last token evaluated (llama-cpp-python keeps them only with logits_all)."""
    row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)


def logits_after(llm: Llama, question: List[int]) -> np.ndarray:
    llm.eval(question)
    return last_logits(llm)


class Warnings(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def store(tmp_path: Path) -> DocStore:
    return DocStore(tmp_path / "cache", warn=Warnings())


@pytest.mark.parametrize("n_words", [30, 300], ids=["within-T", "beyond-T"])
def test_restored_document_gives_the_logits_of_a_fresh_read(tiny_llama_f32: Path, store: DocStore,
                                                           n_words: int) -> None:
    fresh = make_llm(tiny_llama_f32)
    prefix, question = doc_and_question(fresh, n_words)
    assert (len(prefix) + len(question) > 64) == (n_words > 64)  # T = 64
    read_prefix(fresh, prefix)
    assert DocCache(fresh, store).save(prefix, "doc.txt") is not None
    expected = logits_after(fresh, question)
    assert np.abs(expected).max() > 0.1
    state = fresh.lampe_state()
    fresh.close()

    restored = make_llm(tiny_llama_f32)
    assert DocCache(restored, store).restore(prefix)
    assert restored.n_tokens == len(prefix)
    got = logits_after(restored, question)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TIGHT)
    assert restored.lampe_state() == state  # the question's L, M, ... alike
    assert restored.lampe_counters()["exact_beyond_T"] == 0
    assert not store.warn

    if n_words > 64:  # the tolerance can fail: one pass (the document under the question's L) differs
        one_pass = make_llm(tiny_llama_f32)
        one_pass.eval(prefix + question)
        assert np.abs(last_logits(one_pass) - expected).max() > 1e3 * TIGHT
        one_pass.close()
    restored.close()


def _saved(model: Path, store: DocStore, n_words: int = 300, **kwargs) -> Tuple[List[int], Path]:
    llm = make_llm(model, **kwargs)
    prefix, _ = doc_and_question(llm, n_words)
    read_prefix(llm, prefix)
    path = DocCache(llm, store).save(prefix, "doc.txt")
    llm.close()
    assert path is not None
    return prefix, Path(path)


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def _damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x55  # inside the state: only the checksum sees it
    path.write_bytes(bytes(data))


def _damage_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


@pytest.mark.parametrize("damage, reason", [
    (_damage_truncate, "truncated"), (_damage_flip, "checksum mismatch"), (_damage_garbage, "not a pylampe"),
])
def test_a_damaged_entry_is_ignored_with_one_warning(tiny_llama_f32: Path, store: DocStore, damage,
                                                     reason: str) -> None:
    prefix, path = _saved(tiny_llama_f32, store)
    damage(path)
    llm = make_llm(tiny_llama_f32)
    assert not DocCache(llm, store).restore(prefix)
    assert len(store.warn) == 1 and reason in store.warn[0] and "\n" not in store.warn[0]
    assert not path.exists() and llm.n_tokens == 0  # removed, so the next read writes it again
    llm.close()


def test_a_foreign_entry_is_ignored(tiny_llama_f32: Path, store: DocStore) -> None:
    prefix, path = _saved(tiny_llama_f32, store)
    other, other_path = _saved(tiny_llama_f32, store, n_words=280)
    path.write_bytes(other_path.read_bytes())  # another document's entry under this one's name
    llm = make_llm(tiny_llama_f32)
    assert not DocCache(llm, store).restore(prefix)
    assert "other settings or another document" in store.warn[0]
    assert DocCache(llm, store).restore(other)  # the other entry itself is fine
    llm.close()


def test_changed_settings_or_model_never_restore(tiny_llama_f32: Path, store: DocStore, tmp_path: Path) -> None:
    prefix, _ = _saved(tiny_llama_f32, store)
    for kwargs in ({"type_k": llama_cpp.GGML_TYPE_F16}, {"lampe": None}, {"n_ubatch": 128}):
        llm = make_llm(tiny_llama_f32, **kwargs)
        assert not DocCache(llm, store).restore(prefix), kwargs
        llm.close()
    # the same file name and size, other weights: another model
    changed = write_tiny_llama(tmp_path / "llama-f32.gguf", seed=1)
    assert changed.stat().st_size == tiny_llama_f32.stat().st_size
    assert model_identity(str(changed)) != model_identity(str(tiny_llama_f32))
    llm = make_llm(changed)
    assert not DocCache(llm, store).restore(prefix)
    llm.close()
    assert not store.warn  # a miss, not damage


def test_writes_are_atomic_and_two_writers_leave_one_good_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    script = (
        "import sys; from pylampe.doc_cache.store import DocStore\n"
        "s = DocStore(sys.argv[1]); state = bytes([int(sys.argv[2])]) * (8 << 20)\n"
        "s.put('f' * 64, list(range(300)), state, {'name': sys.argv[2]})\n"
    )
    # the installed pylampe, as the tests use it: not the checkout's (from the working directory), which has
    # no built library in a fresh clone
    writers = [subprocess.Popen([sys.executable, "-c", script, str(root), str(b)], cwd=tmp_path) for b in (1, 2)]
    assert [w.wait(60) for w in writers] == [0, 0]
    store = DocStore(root, warn=Warnings())
    state = store.get("f" * 64, list(range(300)))
    assert state is not None and len(set(state)) == 1 and len(state) == 8 << 20  # one writer's, whole
    assert [p.name for p in root.iterdir()] == [store.path("f" * 64, list(range(300))).name]  # no temporaries


def test_an_interrupted_write_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DocStore(tmp_path, warn=Warnings())

    def fail(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    assert store.put("f" * 64, [1, 2, 3], b"x" * 1000, {}) is None
    assert list(tmp_path.iterdir()) == [] and "No space left" in store.warn[0]


def test_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = DocStore(tmp_path, warn=Warnings())
    docs = [[i] * 10 for i in range(4)]
    store.max_bytes = int(3.5 * store.put("f" * 64, docs[0], b"s" * 1000, {"name": "doc0"}).stat().st_size)
    for i, tokens in enumerate(docs[:3]):
        store.put("f" * 64, tokens, b"s" * 1000, {"name": f"doc{i}"})
        os.utime(store.path("f" * 64, tokens), (time.time() - 100 + i, time.time() - 100 + i))
    assert store.get("f" * 64, docs[0]) is not None  # doc0 used: doc1 is now the oldest
    store.put("f" * 64, docs[3], b"s" * 1000, {"name": "doc3"})
    assert sorted(e.name for e in store.entries()) == ["doc0", "doc2", "doc3"]
    assert store.put("f" * 64, docs[1], b"s" * store.max_bytes, {}) is None and "larger than" in store.warn[-1]
    sizes = sum(e.size for e in store.entries())
    assert store.clear() == (3, sizes) and store.entries() == []
