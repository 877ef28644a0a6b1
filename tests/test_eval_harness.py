"""The passkey and perplexity harnesses end to end on the tiny model (T = 64)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import List

import numpy as np
import pytest

from pylampe.eval import (
    METHODS, Plain, Records, Runtime, SelfExtend, build_prompts, load_haystack, parse_methods,
    passkey_prompt, run_passkey, run_ppl,
)
from pylampe.eval import passkey_eval, ppl_eval
from pylampe.eval.decoder import Decoder
from pylampe.eval.passkey import INTRO, NEEDLE, QUESTION
from pylampe.eval.report import passkey_heatmap, ppl_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG = 256  # 4T: the passkey intro and question alone take ~160 tokens of the tiny vocabulary


@pytest.fixture(scope="module")
def runtime(tiny_llama_f32: Path) -> Runtime:
    rt = Runtime(tiny_llama_f32, {"n_batch": 64})
    yield rt
    rt.close()


def test_passkey_prompt_depth_and_length(runtime: Runtime) -> None:
    hay = load_haystack("repeat")
    for depth in (0.0, 0.5, 1.0):
        text, key = passkey_prompt(800, runtime.count_tokens, seed=3, depth=depth, haystack=hay)
        assert 700 <= runtime.count_tokens(text) <= 800
        needle = NEEDLE.format(key=key)
        assert text.startswith(INTRO + needle) == (depth == 0.0)
        assert text.endswith(needle + QUESTION) == (depth == 1.0)
        assert text.count(key) == 2
    with pytest.raises(ValueError, match="needs more than 50 tokens"):
        passkey_prompt(50, runtime.count_tokens)


def test_document_haystack(tmp_path: Path, runtime: Runtime) -> None:
    doc = tmp_path / "doc.jsonl"
    doc.write_text("\n".join(json.dumps({"input": "the word of a user " * 40}) for _ in range(2)) + "\n")
    hay = load_haystack(str(doc))
    assert hay.name == "doc.jsonl" and hay.max_units == 400
    text, _ = passkey_prompt(300, runtime.count_tokens, haystack=hay)
    assert "the word of a user" in text
    with pytest.raises(ValueError, match="too short"):
        passkey_prompt(2000, runtime.count_tokens, haystack=hay)
    (tmp_path / "bad.jsonl").write_text('{"text": "no input field"}\n')
    with pytest.raises(ValueError, match="'input'"):
        load_haystack(str(tmp_path / "bad.jsonl"))


def _passkey(runtime: Runtime, out: Path, methods: List[str], **kw) -> List[dict]:
    hay = load_haystack("repeat")
    prompts = build_prompts(runtime, [LONG], kw.pop("depths", [0.5]), 1, 0, hay)
    return run_passkey(runtime, parse_methods(methods), prompts, 0, hay,
                       Records(out, passkey_eval.KEY_FIELDS), **kw)


def test_passkey_every_method(runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "pk.jsonl"
    total: List[int] = []
    done: List[int] = []
    records = _passkey(runtime, out, list(METHODS), start=total.append, on_tokens=done.append)
    assert [r["method"] for r in records] == list(METHODS)
    assert sum(done) == total[0]  # the progress total is exact
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == records
    for r in records:
        assert r["length"] == LONG and LONG - 20 <= r["n_tokens"] <= LONG
        assert len(r["token_logprobs"]) == len(r["margins"]) >= 1
        assert r["answer_logprob"] == pytest.approx(sum(r["token_logprobs"]))
        assert all(lp < 0 for lp in r["token_logprobs"])
        assert len(r["generated_tokens"]) == passkey_eval.DEFAULT_N_GEN
        assert r["correct"] == (r["key"] in r["generated"])
    by = {r["method"]: r for r in records}
    assert by["self-extend"]["params"] == {"group": 7, "window": 28}  # L = 236 + 8
    assert by["linear"]["params"]["rope_freq_scale"] == pytest.approx(64 / 244)
    # the baselines change the answer's score
    assert len({round(r["answer_logprob"], 4) for r in records}) == len(records)
    passkey_heatmap(records, tmp_path / "pk.png")
    assert (tmp_path / "pk.png").read_bytes()[:8] == PNG_MAGIC


def test_lampe_greedy_answer_is_generate_and_its_own_argmax(runtime: Runtime, tmp_path: Path) -> None:
    """After teacher forcing, the harness removes the answer from the cache and decodes greedily beyond T: that
    must stay LaMPE (an edit once dropped it to plain RoPE), so its tokens are Llama.generate's, and teacher
    forcing them makes each one the argmax."""
    hay = load_haystack("repeat")
    (prompt,) = build_prompts(runtime, [LONG], [0.5], 1, 0, hay)
    (method,) = parse_methods(["lampe"])
    (record,) = run_passkey(runtime, [method], [prompt], 0, hay, Records(tmp_path / "pk.jsonl", passkey_eval.KEY_FIELDS))
    n_gen = passkey_eval.DEFAULT_N_GEN
    n_ctx = len(prompt.tokens) + max(len(prompt.answer), n_gen)
    setup = method.setup(runtime.info, n_ctx)
    llm = runtime.load(setup, n_ctx)
    try:
        want = list(itertools.islice(llm.generate(prompt.tokens, temp=0.0), n_gen))
        assert record["generated_tokens"] == want
        scored = passkey_eval.score(Decoder(llm), setup.prefill, dataclasses.replace(prompt, answer=want), n_gen)
        assert scored["generated_tokens"] == want and min(scored["margins"]) >= 0
        ubatches = llm.lampe_counters()
        assert ubatches["lampe"] > 0 and ubatches["exact_beyond_T"] == 0 and ubatches["L_kept"] >= 1
    finally:
        llm.close()


def test_self_extend_group_one_is_plain(runtime: Runtime, tmp_path: Path) -> None:
    a, b = _passkey(runtime, tmp_path / "pk.jsonl", ["none", "self-extend:group=1:window=40"])
    assert a["token_logprobs"] == pytest.approx(b["token_logprobs"], abs=1e-4)
    assert a["generated_tokens"] == b["generated_tokens"]


def test_passkey_resume(runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "pk.jsonl"
    first = _passkey(runtime, out, ["none"], depths=[0.2, 0.8])
    # an interrupted run: one record done, then a torn line
    out.write_text(json.dumps(first[0]) + "\n" + json.dumps(first[1])[:40])
    total: List[int] = []
    again = _passkey(runtime, out, ["none"], depths=[0.2, 0.8], start=total.append)
    assert again == first
    assert total[0] == first[1]["n_tokens"] + len(first[1]["margins"]) + passkey_eval.DEFAULT_N_GEN - 2  # one prompt left
    assert [json.loads(line) for line in out.read_text().splitlines()] == first
    total.clear()
    assert _passkey(runtime, out, ["none"], depths=[0.2, 0.8], start=total.append) == first
    assert total == [0]


def test_ppl_every_method(runtime: Runtime, tmp_path: Path) -> None:
    hay = load_haystack("/work/shared/data/leval_sci_fi.jsonl") if Path(
        "/work/shared/data/leval_sci_fi.jsonl").exists() else load_haystack("repeat")
    out = tmp_path / "ppl.jsonl"
    records = run_ppl(runtime, parse_methods(list(METHODS)), [64, 160], hay, Records(out, ppl_eval.KEY_FIELDS))
    assert len(records) == 12
    assert [json.loads(line) for line in out.read_text().splitlines()] == records
    for r in records:
        assert [(b["start"], b["end"]) for b in r["buckets"]] == [(0, 64), (64, 128), (128, 160)][: -(-r["length"] // 64)]
        assert sum(b["n"] for b in r["buckets"]) == r["length"] - 1
        nll = sum(b["n"] * np.log(b["ppl"]) for b in r["buckets"]) / (r["length"] - 1)
        assert r["ppl"] == pytest.approx(np.exp(nll))
    # within T every method but a forced self-extend is plain RoPE
    short = {r["method"]: r["ppl"] for r in records if r["length"] == 64}
    assert len({round(v, 3) for v in short.values()}) == 1
    ppl_plot(records, tmp_path / "ppl.png")
    assert (tmp_path / "ppl.png").read_bytes()[:8] == PNG_MAGIC
    # resumable: nothing left to do
    total: List[int] = []
    assert run_ppl(runtime, parse_methods(list(METHODS)), [64, 160], hay, Records(out, ppl_eval.KEY_FIELDS),
                   start=total.append) == records and total == [0]


def test_ppl_independent_of_batch_size(tiny_llama_f32: Path, tmp_path: Path) -> None:
    """Logits reduced batch by batch: the batch size must not matter (bounded memory)."""
    hay = load_haystack("repeat")
    results = []
    for n_batch in (7, 200):
        rt = Runtime(tiny_llama_f32, {"n_batch": n_batch})
        try:
            results.append(run_ppl(rt, [Plain(), SelfExtend()], [150], hay,
                                   Records(tmp_path / f"b{n_batch}.jsonl", ppl_eval.KEY_FIELDS)))
        finally:
            rt.close()
    for a, b in zip(*results):
        assert a["ppl"] == pytest.approx(b["ppl"], rel=1e-3)
