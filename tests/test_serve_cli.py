"""``pylampe serve``: start-up errors as one line, the config file with two aliases, the API key."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from server_process import HOST, ServerProcess, document, free_port, pylampe_command
from test_cli import assert_one_error


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([pylampe_command(), "serve", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, code, pattern",
    [
        (["--lampe-window", "60"], 2, "must stay below the trained context T = 64"),
        (["--lampe-mapping-length", "8", "--lampe-sigmoid", "1,2,3"], 2, "exclude each other"),
        (["--method", "self-extend"], 2, "self-extend .* cannot be served"),
        (["--method", "bogus"], 2, "unknown method 'bogus'"),
        (["--n_batch", "many"], 2, "--n_batch: invalid int value"),
        (["--port", "70000"], 2, "port: .*65535"),
    ],
)
def test_bad_settings(tiny_llama_f32: Path, args: list, code: int, pattern: str) -> None:
    assert_one_error(serve("-m", str(tiny_llama_f32), "--port", str(free_port()), *args), code, pattern)


def test_missing_model(tmp_path: Path) -> None:
    assert_one_error(serve("-m", str(tmp_path / "nope.gguf")), 1, "model file not found")


def test_truncated_model(truncated_gguf: Path) -> None:
    assert_one_error(serve("-m", str(truncated_gguf)), 1, "could not load .*truncated or corrupt")


def test_model_without_rope(tiny_gpt2: Path, tmp_path: Path) -> None:
    """By default served with upstream attention, and /extras/lampe says why; LaMPE parameters that
    cannot apply are refused at start."""
    server = ServerProcess(["-m", str(tiny_gpt2)], tmp_path / "serve.log")
    try:
        status, _ = server.request("POST", "/v1/completions", json.dumps({"prompt": "hello", "max_tokens": 2}).encode())
        assert status == 200
        status, body = server.request("GET", "/extras/lampe")
        assert status == 200 and body["state"]["status"] == "off: the model does not use RoPE", body
    finally:
        server.stop()
    run = serve("-m", str(tiny_gpt2), "--port", str(free_port()), "--lampe-window", "8")
    assert_one_error(run, 1, "RoPE.*--no-lampe")


def test_port_in_use(tiny_llama_f32: Path) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        run = serve("-m", str(tiny_llama_f32), "--host", HOST, "--port", str(port))
    assert_one_error(run, 1, f"cannot listen on {HOST}:{port}: address already in use")


def test_config_file_errors(tiny_llama_f32: Path, tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"models": [')
    assert_one_error(serve("--config-file", str(bad_json)), 2, "not valid JSON")
    bad_field = tmp_path / "field.json"
    bad_field.write_text(json.dumps({"models": [{"model": str(tiny_llama_f32), "lampe_window": 0}]}))
    assert_one_error(serve("--config-file", str(bad_field)), 2, r"models\.0\.lampe_window")
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"models": [{"model": str(tiny_llama_f32)}]}))
    assert_one_error(serve("--config-file", str(ok), "--lampe-window", "4"), 2, "drop --lampe_window")


class _KeyedServer(ServerProcess):
    def _auth_probe(self) -> dict:
        return {"Authorization": "Bearer sekret"}


@pytest.fixture(scope="module")
def two_models(tiny_llama_f32: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("serve-config")
    config = folder / "config.yaml"
    config.write_text(
        "api_key: sekret\n"
        "models:\n"
        f"  - {{model: '{tiny_llama_f32}', model_alias: long, n_ctx: 512, lampe_within_window: exact}}\n"
        f"  - {{model: '{tiny_llama_f32}', model_alias: plain, n_ctx: 256, lampe: false}}\n"
    )
    proc = _KeyedServer(["--config-file", str(config)], folder / "serve.log")
    try:
        yield proc
    finally:
        proc.stop()


def _ask(server: ServerProcess, model: str, words: int) -> Any:
    return server.post_json("/v1/chat/completions", {
        "model": model, "max_tokens": 3, "temperature": 0,
        "messages": [{"role": "user", "content": document(words, seed=3)}]}, headers=KEY)


KEY = {"Authorization": "Bearer sekret"}


def test_api_key(two_models: ServerProcess) -> None:
    status, body = two_models.request("GET", "/v1/models")
    assert status == 401
    status, body = two_models.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = two_models.request("GET", "/v1/models", headers=KEY)
    assert status == 200 and [m["id"] for m in body["data"]] == ["long", "plain"]


def test_a_lampe_alias_and_a_plain_one(two_models: ServerProcess) -> None:
    status, body = _ask(two_models, "plain", 100)
    assert status == 200, body
    status, state = two_models.request("GET", "/extras/lampe", headers=KEY)
    assert state["model"] == "plain" and state["lampe"] is None and state["n_ctx"] == 256
    status, body = _ask(two_models, "long", 200)
    assert status == 200 and body["model"] == "long"
    status, state = two_models.request("GET", "/extras/lampe", headers=KEY)
    assert state["model"] == "long" and state["lampe"]["window"] == 8
    assert state["state"]["L"] == body["usage"]["prompt_tokens"] > 64
    # the plain alias's smaller context refuses what the LaMPE one took
    status, body = _ask(two_models, "plain", 300)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"


def test_help_lists_pylampe_and_llama_cpp_python_flags() -> None:
    run = serve("--help")
    assert run.returncode == 0
    for flag in ("-m", "--model-alias", "-c", "--n_ctx", "-t", "--n_threads", "--flash-attn", "--cache-type-k",
                 "--no-lampe", "--method", "--lampe-window", "--lampe-sigmoid", "--lampe-within-window", "--host",
                 "--port", "--api-key", "--config-file", "--rope_freq_scale", "--yarn_orig_ctx", "--n_batch",
                 "--interrupt_requests", "context_length_exceeded", "/extras/lampe"):
        assert flag in run.stdout, flag
