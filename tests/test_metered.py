"""MeteredLlama in-process: refused overflows, the dry-run prompt count, per-turn reuse, and L
after a KV-cache edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from server_process import document

N_CTX = 512


def _new(path: Path, **kwargs: Any) -> Any:
    from pylampe.metered import MeteredLlama  # first: it points llama_cpp at pylampe's library
    import llama_cpp

    return MeteredLlama(str(path), n_ctx=N_CTX, n_threads=2, n_threads_batch=2, flash_attn=True,
                        type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, logits_all=True,
                        chat_format="chat_template.default", verbose=False, **kwargs)


@pytest.fixture(scope="module")
def llm(tiny_llama_f32: Path) -> Iterator[Any]:
    model = _new(tiny_llama_f32)
    yield model
    model.close()


def _tokens(llm: Any, text: str) -> list:
    return llm.tokenize(text.encode(), add_bos=True, special=True)


def test_overflow_is_refused_not_truncated(llm: Any) -> None:
    from pylampe.metered import ContextOverflowError

    prompt = document(400, seed=1)
    n = len(_tokens(llm, prompt))
    with pytest.raises(ContextOverflowError, match=rf"prompt \({n} tokens\) plus 200 tokens .* context of {N_CTX}"):
        llm.create_completion(prompt, max_tokens=200)
    with pytest.raises(ContextOverflowError, match="leaves no room"):
        llm.create_completion(document(700, seed=2), max_tokens=-1)
    assert llm.create_completion(prompt, max_tokens=N_CTX - n, temperature=0.0)["usage"]["prompt_tokens"] == n


def test_prompt_tokens_is_a_dry_run(llm: Any) -> None:
    prompt = document(120, seed=3)
    out = llm.create_completion(prompt, max_tokens=3, temperature=0.0)
    before = (llm.n_tokens, list(llm._input_ids))
    n = llm.prompt_tokens(llm.create_completion, prompt=prompt + " the end", max_tokens=3)
    assert n == len(_tokens(llm, prompt + " the end"))
    messages = [{"role": "user", "content": prompt}]
    assert llm.prompt_tokens(llm.create_chat_completion, messages=messages) > n - 10
    assert (llm.n_tokens, list(llm._input_ids)) == before  # nothing evaluated, nothing dropped
    again = llm.create_completion(prompt, max_tokens=3, temperature=0.0)
    assert again["choices"][0]["text"] == out["choices"][0]["text"]
    assert llm.last_turn.prefill_tokens <= 1  # the cache was still there


def test_turn_stats_count_reuse(llm: Any) -> None:
    doc = document(150, seed=4)
    llm.create_completion(doc + " what is the key", max_tokens=4, temperature=0.0)
    first = llm.last_turn
    assert first.generated_tokens == 4 and first.ttft_s > 0
    llm.create_completion(doc + " what is the number", max_tokens=4, temperature=0.0)
    second = llm.last_turn
    assert second.reused_tokens >= len(_tokens(llm, doc)) - 1
    assert second.prefill_tokens == second.prompt_tokens - second.reused_tokens < 10


def test_reference_length_survives_the_cache_edit(llm: Any, tiny_llama_f32: Path) -> None:
    """A prompt that shares only a few tokens with the cached one: llama-cpp-python trims the
    cache after pylampe.Llama set L; the prompt must still be evaluated with LaMPE, L = its
    length, exactly as on a fresh context."""
    llm.create_completion(document(200, seed=5), max_tokens=2, temperature=0.0)
    prompt = document(180, seed=6)
    out = llm.create_completion(prompt, max_tokens=4, temperature=0.0, logprobs=1)
    n = len(_tokens(llm, prompt))
    state = llm.lampe_state()
    assert state["L"] == n and state["multi_grained"]
    assert 0 < llm.last_turn.reused_tokens < 8  # BOS and a word or so: an edit happened

    fresh = _new(tiny_llama_f32)
    try:
        cold = fresh.create_completion(prompt, max_tokens=4, temperature=0.0, logprobs=1)
    finally:
        fresh.close()
    assert out["choices"][0]["text"] == cold["choices"][0]["text"]
    np.testing.assert_allclose(out["choices"][0]["logprobs"]["token_logprobs"],
                               cold["choices"][0]["logprobs"]["token_logprobs"], rtol=0, atol=1e-4)
