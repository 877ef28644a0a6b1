"""``pylampe serve`` end to end: a subprocess on a loopback port, the official openai client.

The tiny model has T = 64 and LaMPE's derived W = 8, S = 1: a "long
document" here is 100-300 tokens in a 512-token context. The KV cache is f32
so that the comparisons with an in-process pylampe.Llama can be tight.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import openai
import pytest

from server_process import ServerProcess, document

N_CTX = 512
THREADS = 2
# Sampling that the server and the in-process reference share: greedy, no penalties.
GREEDY: Dict[str, Any] = {"temperature": 0.0}
GREEDY_EXTRA: Dict[str, Any] = {"repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def server(tiny_llama_f32: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServerProcess(
        ["-m", str(tiny_llama_f32), "--model-alias", "tiny", "-c", str(N_CTX), "-t", str(THREADS), "--cache-type-k", "f32",
         "--cache-type-v", "f32", "--logits_all", "true"],
        log,
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Any:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def reference(tiny_llama_f32: Path) -> Iterator[Any]:
    """An in-process pylampe.Llama (a MeteredLlama, as the server's) set up as the server's model."""
    from pylampe.metered import MeteredLlama  # first: it points llama_cpp at pylampe's library
    import llama_cpp

    llm = MeteredLlama(
        str(tiny_llama_f32), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS,
        flash_attn=True, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,
        logits_all=True, chat_format="chat_template.default", verbose=False,
    )
    yield llm
    llm.close()


def chat(client: Any, messages: List[Dict[str, str]], max_tokens: int = 6, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=max_tokens, extra_body=GREEDY_EXTRA,
        **GREEDY, **kwargs,
    )


def stream_text(client: Any, messages: List[Dict[str, str]], max_tokens: int = 6) -> str:
    chunks = chat(client, messages, max_tokens, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def last_request(server: ServerProcess) -> Dict[str, Any]:
    status, body = server.request("GET", "/extras/lampe")
    assert status == 200, body
    return body


def logprobs_of(response: Any) -> np.ndarray:
    """The chosen tokens' log-probabilities, from the openai client or llama-cpp-python."""
    if isinstance(response, dict):
        return np.array([t["logprob"] for t in response["choices"][0]["logprobs"]["content"]])
    return np.array([t.logprob for t in response.choices[0].logprobs.content])


def user(text: str) -> Dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, str]:
    return {"role": "assistant", "content": text}


def two_turns(doc: str) -> Tuple[List[Dict[str, str]], str]:
    return [user(f"{doc}\n\nwhat is the key")], "and what is the number"


def test_models(client: Any) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_chat_completion_and_usage(client: Any) -> None:
    r = chat(client, [user("hello world")], max_tokens=5)
    assert r.object == "chat.completion" and r.model == "tiny"
    assert r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens > 2


def test_completion(client: Any) -> None:
    r = client.completions.create(model="tiny", prompt="the word is", max_tokens=4,
                                  extra_body=GREEDY_EXTRA, **GREEDY)
    assert r.object == "text_completion" and r.usage.completion_tokens == 4
    again = client.completions.create(model="tiny", prompt="the word is", max_tokens=4,
                                      extra_body=GREEDY_EXTRA, **GREEDY)
    assert again.choices[0].text == r.choices[0].text


def test_streaming_equals_plain(client: Any) -> None:
    messages = [user(document(40, seed=3) + "\n\nwhat is it")]
    plain = chat(client, messages, max_tokens=8).choices[0].message.content
    assert stream_text(client, messages, max_tokens=8) == plain
    completion = client.completions.create(model="tiny", prompt="hello world the", max_tokens=5,
                                           stream=True, extra_body=GREEDY_EXTRA, **GREEDY)
    streamed = "".join(c.choices[0].text for c in completion)
    assert streamed == client.completions.create(model="tiny", prompt="hello world the", max_tokens=5,
                                                 extra_body=GREEDY_EXTRA, **GREEDY).choices[0].text


def test_beyond_trained_context_needs_no_flags(client: Any, server: ServerProcess) -> None:
    r = chat(client, [user(document(250, seed=4) + "\n\nwhat is the key")], max_tokens=4)
    assert r.usage.prompt_tokens > 4 * 64
    state = last_request(server)
    assert state["state"]["L"] == r.usage.prompt_tokens and state["state"]["multi_grained"]
    assert state["ubatches"]["lampe"] > 0 and state["ubatches"]["exact_beyond_T"] == 0


@pytest.mark.parametrize("stream", [False, True])
def test_too_long_is_refused_with_the_numbers(client: Any, server: ServerProcess, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, [user(document(600, seed=5))], max_tokens=4, stream=stream)
    error = info.value.body
    assert info.value.status_code == 400 and error["code"] == "context_length_exceeded"
    assert f"maximum context length is {N_CTX} tokens" in error["message"]
    # prompt fits, prompt + max_tokens does not: named too, never silently shortened
    messages = [user(document(400, seed=6))]
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, messages, max_tokens=200, stream=stream)
    assert "200 in the completion" in info.value.body["message"]
    assert chat(client, [user("hello")], max_tokens=2).usage.completion_tokens == 2


def test_too_long_completion(server: ServerProcess) -> None:
    status, body = server.post_json("/v1/completions", {"prompt": document(700, seed=7), "max_tokens": 8})
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert f"maximum context length is {N_CTX} tokens" in body["error"]["message"]


def test_tokenize_and_detokenize_use_the_served_model(server: ServerProcess) -> None:
    """llama-cpp-python's /extras routes get the model through the app's dependency, like completions."""
    status, body = server.post_json("/extras/tokenize", {"input": "hello world"})
    assert status == 200 and body["tokens"], body
    status, count = server.post_json("/extras/tokenize/count", {"input": "hello world"})
    assert status == 200 and count["count"] == len(body["tokens"])
    status, text = server.post_json("/extras/detokenize", {"tokens": body["tokens"]})
    assert status == 200 and text["text"].strip() == "hello world", text


@pytest.mark.parametrize(
    "body, needle",
    [
        (b'{"messages": [{"role": "user", "content": "hi"}', "not valid JSON"),
        (b'{"messages": "hi"}', "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}).encode(),
         "temperature"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}], "top_p": 5}).encode(),
         "top_p"),
    ],
)
def test_bad_requests_get_400_and_the_server_goes_on(server: ServerProcess, body: bytes, needle: str) -> None:
    status, answer = server.request("POST", "/v1/chat/completions", body)
    assert status == 400, answer
    assert needle in answer["error"]["message"]
    status, answer = server.post_json("/v1/chat/completions",
                                      {"messages": [user("hello")], "max_tokens": 2})
    assert status == 200 and answer["usage"]["completion_tokens"] == 2


def test_concurrent_clients_queue_and_match_sequential(client: Any, server: ServerProcess) -> None:
    # Prompts of one length beyond T: the shared document prefix is computed under the same L
    # whichever request comes first, so greedy answers cannot depend on the order.
    doc = document(120, seed=8)
    prompts = [[user(f"{doc}\n\nwhat is the number {d}")] for d in range(8)]

    def ask(i: int) -> str:
        if i % 2:
            return stream_text(client, prompts[i])
        return chat(client, prompts[i]).choices[0].message.content

    sequential = [ask(i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(ask, range(8), timeout=120))
    assert concurrent == sequential
    assert server.alive()


def test_turn_two_reuses_the_first_turn(client: Any, server: ServerProcess, reference: Any) -> None:
    """(a) turn 2 through the server equals an in-process pylampe.Llama doing the same two
    turns; (b) the server evaluated only turn 2's new tokens."""
    turn1, question2 = two_turns(document(150, seed=9))
    r1 = chat(client, turn1)
    first = last_request(server)["last_request"]
    turn2 = turn1 + [assistant(r1.choices[0].message.content), user(question2)]
    r2 = chat(client, turn2, logprobs=True, top_logprobs=2)
    served = last_request(server)

    # (b) reuse: everything up to turn 1's answer came from the KV cache
    turn = served["last_request"]
    assert turn["prompt_tokens"] == r2.usage.prompt_tokens > 64
    assert turn["reused_tokens"] >= first["prompt_tokens"]
    assert turn["prefill_tokens"] == turn["prompt_tokens"] - turn["reused_tokens"]
    assert turn["prefill_tokens"] <= turn["prompt_tokens"] - first["prompt_tokens"]  # only the new part
    assert served["state"]["L"] == r2.usage.prompt_tokens  # L recomputed from the whole prompt
    assert served["ubatches"]["exact_beyond_T"] == 0

    # (a) the same two turns in-process
    reference.reset()
    ref1 = reference.create_chat_completion(messages=turn1, max_tokens=6, temperature=0.0, repeat_penalty=1.0)
    assert ref1["choices"][0]["message"]["content"] == r1.choices[0].message.content
    ref2 = reference.create_chat_completion(messages=turn2, max_tokens=6, temperature=0.0, repeat_penalty=1.0,
                                            logprobs=True, top_logprobs=2)
    assert ref2["choices"][0]["message"]["content"] == r2.choices[0].message.content
    np.testing.assert_allclose(logprobs_of(r2), logprobs_of(ref2), rtol=0, atol=1e-4)

    # A cold run of the same conversation differs beyond T (turn 1's keys keep turn 1's L):
    # the comparison above is able to see a difference of that kind.
    reference.reset()
    cold = reference.create_chat_completion(messages=turn2, max_tokens=6, temperature=0.0, repeat_penalty=1.0,
                                            logprobs=True, top_logprobs=2)
    n = min(len(logprobs_of(cold)), len(logprobs_of(r2)))
    assert np.max(np.abs(logprobs_of(cold)[:n] - logprobs_of(r2)[:n])) > 1e-3


def test_turn_two_within_the_window_equals_a_cold_run(client: Any, server: ServerProcess, reference: Any) -> None:
    """(c) inside T attention is upstream's, and reuse is exact up to floating point."""
    turn1, question2 = two_turns(document(8, seed=10))
    r1 = chat(client, turn1, max_tokens=4)
    turn2 = turn1 + [assistant(r1.choices[0].message.content), user(question2)]
    r2 = chat(client, turn2, max_tokens=4, logprobs=True, top_logprobs=2)
    served = last_request(server)
    assert served["last_request"]["prompt_tokens"] <= 64 and served["state"]["L"] == 0
    assert served["last_request"]["reused_tokens"] > served["last_request"]["prefill_tokens"]

    reference.reset()
    cold = reference.create_chat_completion(messages=turn2, max_tokens=4, temperature=0.0, repeat_penalty=1.0,
                                            logprobs=True, top_logprobs=2)
    assert cold["choices"][0]["message"]["content"] == r2.choices[0].message.content
    np.testing.assert_allclose(logprobs_of(r2), logprobs_of(cold), rtol=0, atol=1e-4)


def test_a_client_that_leaves_mid_stream_frees_the_model(server: ServerProcess) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", json.dumps({
        "messages": [user(document(100, seed=13))], "max_tokens": 300, "stream": True}),
        {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")  # the first event, then hang up
    conn.close()
    status, answer = server.post_json("/v1/chat/completions", {"messages": [user("hello")], "max_tokens": 2},
                                      timeout=30)
    assert status == 200 and answer["usage"]["completion_tokens"] == 2
