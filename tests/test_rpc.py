"""LaMPE across llama.cpp RPC workers, on loopback: `pylampe rpc-server` processes hold the layers.

A model split across the local CPU and two workers gives the local run's logits beyond T (the fused op and
its composition); a worker killed or hung turns the next evaluation into one RpcWorkerError (no abort, no
hang), and a model loaded once it is back works again; a worker that is not this build's is refused at the
handshake; and the CLI and the server say so in one line / HTTP 503 and keep serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest

from server_process import HOST, ServerProcess, free_port, pylampe_command

from pylampe import Llama
from pylampe.rpc import RpcWorkerError

N_PROMPT = 150  # beyond the tiny model's T = 64: LaMPE is on


class Worker:
    """`pylampe rpc-server` on a free loopback port."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.endpoint = f"{HOST}:{self.port}"
        self.proc = subprocess.Popen([pylampe_command(), "rpc-server", "--port", str(self.port), "-t", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:  # ready when it accepts (the probe connection is closed at once, as a client's would be)
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pylampe rpc-server on {self.endpoint} did not start")
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def workers() -> Iterator[List[Worker]]:
    started = [Worker(), Worker()]
    yield started
    for w in started:
        if w.proc.poll() is None:
            os.kill(w.proc.pid, signal.SIGCONT)  # a test may have stopped it
            w.kill()


def prompt(n: int = N_PROMPT) -> List[int]:
    return np.random.default_rng(0).integers(3, 400, size=n).tolist()


def logits(model: Path, tokens: List[int], **kwargs: object) -> np.ndarray:
    llm = Llama(str(model), n_ctx=256, logits_all=True, verbose=False, **kwargs)
    try:
        llm.eval(tokens)
        assert llm.lampe_counters()["lampe"] > 0  # LaMPE ran, beyond T
        return np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()


@pytest.mark.parametrize("flash_attn", [True, False], ids=["fused", "ops"])
def test_split_across_two_workers_matches_local(tiny_llama_f32: Path, workers: List[Worker], flash_attn: bool,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    tokens = prompt()
    local = logits(tiny_llama_f32, tokens, flash_attn=flash_attn)
    # -ngl 2 of the 3 (2 blocks and the output layer): one on the local CPU, the others on the workers
    remote = Llama(str(tiny_llama_f32), n_ctx=256, logits_all=True, verbose=True, flash_attn=flash_attn,
                   n_gpu_layers=2, rpc_servers=[w.endpoint for w in workers])
    remote.eval(tokens)
    got = np.array(remote.scores[:N_PROMPT])
    remote.close()
    log = capfd.readouterr().err
    for w in workers:  # both workers hold part of the model
        assert f"RPC0[{w.endpoint}] model buffer size" in log or f"RPC1[{w.endpoint}] model buffer size" in log, \
            log[-3000:]
    assert np.abs(got - local).max() / np.abs(local).max() < 1e-5


def test_killed_worker_is_an_error_then_a_reload_works(tiny_llama_f32: Path, workers: List[Worker]) -> None:
    tokens = prompt()
    local = logits(tiny_llama_f32, tokens)
    llm = Llama(str(tiny_llama_f32), n_ctx=256, verbose=False, n_gpu_layers=99,
                rpc_servers=[w.endpoint for w in workers])
    llm.eval(tokens[:100])
    workers[1].kill()
    t0 = time.monotonic()
    with pytest.raises(RpcWorkerError, match=f"{workers[1].endpoint} stopped answering"):
        for t in tokens[100:]:
            llm.eval([t])
    assert time.monotonic() - t0 < 10
    llm.close()
    with pytest.raises(RpcWorkerError, match="cannot reach"):
        Llama(str(tiny_llama_f32), n_ctx=256, verbose=False, n_gpu_layers=99,
              rpc_servers=[w.endpoint for w in workers])
    workers[1] = Worker(workers[1].port)  # back on the same port: a new model connects again
    again = logits(tiny_llama_f32, tokens, n_gpu_layers=99, rpc_servers=[w.endpoint for w in workers])
    assert np.abs(again - local).max() / np.abs(local).max() < 1e-5


def test_hung_worker_times_out(tiny_llama_f32: Path, workers: List[Worker]) -> None:
    llm = Llama(str(tiny_llama_f32), n_ctx=256, verbose=False, n_gpu_layers=99, rpc_timeout=2.0,
                rpc_servers=[w.endpoint for w in workers])
    try:
        llm.eval(prompt(20))
        os.kill(workers[0].proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(RpcWorkerError, match="stopped answering"):
            llm.eval([5])
        assert time.monotonic() - t0 < 15
    finally:
        os.kill(workers[0].proc.pid, signal.SIGCONT)
        llm.close()


def _stock_worker(port: int, handshakes: List[bytes]) -> None:
    """A worker of upstream's protocol 7.0.0: it answers HELLO like a stock rpc-server (no LaMPE mark)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(4)
        s.settimeout(20)
        for _ in range(2):  # pylampe's reachability probe, then llama.cpp's connection
            conn, _ = s.accept()
            with conn:
                conn.settimeout(5)
                request = conn.recv(1 + 8 + 24)
                if not request:
                    continue
                handshakes.append(request)
                caps = bytes(24)
                conn.sendall((4 + len(caps)).to_bytes(8, "little") + bytes([7, 0, 0, 0]) + caps)
                conn.recv(1)  # the client hangs up


def test_stock_worker_is_refused(tiny_llama_f32: Path) -> None:
    port = free_port()
    handshakes: List[bytes] = []
    fake = threading.Thread(target=_stock_worker, args=(port, handshakes), daemon=True)
    fake.start()
    time.sleep(0.2)
    with pytest.raises(RpcWorkerError, match="not a `pylampe rpc-server`.*lacks the LaMPE op"):
        Llama(str(tiny_llama_f32), n_ctx=256, verbose=False, n_gpu_layers=99, rpc_servers=f"{HOST}:{port}")
    fake.join(10)
    assert handshakes and handshakes[0][0] == 14  # RPC_CMD_HELLO: the refusal came from the real handshake


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pylampe_command(), *args], capture_output=True, text=True, timeout=300)


def test_generate_with_workers_equals_local(workers: List[Worker]) -> None:
    """The embedded model, LaMPE applied to a short prompt too (--lampe-within-window lampe): the same greedy text."""
    common = ["generate", "-p", "The capital of France is", "-n", "12", "-t", "2",
              "--lampe-within-window", "lampe"]
    local = run_cli(*common)
    remote = run_cli(*common, "--rpc", ",".join(w.endpoint for w in workers), "-ngl", "99")
    assert local.returncode == 0 and remote.returncode == 0, local.stderr[-2000:] + remote.stderr[-2000:]
    assert remote.stdout == local.stdout and local.stdout.strip()


def test_cli_unreachable_worker_is_one_line(tiny_llama_f32: Path) -> None:
    run = run_cli("generate", "-m", str(tiny_llama_f32), "-p", "hello", "-n", "2", "--rpc", f"{HOST}:{free_port()}")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"pylampe: error: cannot reach RPC worker {run.args[-1]}: Connection refused"], run.stderr


def test_rpc_server_refuses_a_busy_port_and_a_bad_host() -> None:
    w = Worker()
    try:
        busy = run_cli("rpc-server", "--port", str(w.port))
        assert busy.returncode == 1 and "cannot listen on" in busy.stderr and len(busy.stderr.splitlines()) == 1
    finally:
        w.kill()
    bad = run_cli("rpc-server", "--host", "example.org")
    assert bad.returncode == 1 and "not an IPv4 address" in bad.stderr
    too_big = run_cli("rpc-server", "--port", "70000")
    assert too_big.returncode == 2 and too_big.stderr.strip().splitlines() == [
        "pylampe: error: argument --port: must be <= 65535, got 70000"], too_big.stderr


def test_server_answers_503_then_serves_again(tiny_llama_f32: Path, workers: List[Worker], tmp_path: Path) -> None:
    import openai

    server = ServerProcess(["-m", str(tiny_llama_f32), "-ngl", "99", "--rpc", ",".join(w.endpoint for w in workers),
                            "-c", "512"], tmp_path / "serve.log")
    try:
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="none", max_retries=0)
        ask = dict(model="tiny", prompt="hello " * 80, max_tokens=4, temperature=0.0)
        first = client.completions.create(**ask)
        workers[0].kill()
        with pytest.raises(openai.APIStatusError) as lost:  # the request that meets the dead worker
            client.completions.create(**ask)
        assert lost.value.status_code == 503 and workers[0].endpoint in str(lost.value)
        with pytest.raises(openai.APIStatusError) as down:  # still down: the reload cannot reach it
            client.completions.create(**ask)
        assert down.value.status_code == 503 and "cannot reach" in str(down.value)
        workers[0] = Worker(workers[0].port)
        again = client.completions.create(**ask)
        assert again.choices[0].text == first.choices[0].text
    finally:
        server.stop()


def test_bench_and_eval_take_the_workers(tiny_llama_f32: Path, workers: List[Worker], tmp_path: Path) -> None:
    endpoints = ",".join(w.endpoint for w in workers)
    out = tmp_path / "bench.jsonl"
    bench = run_cli("bench", "-m", str(tiny_llama_f32), "--length", "2T", "--method", "lampe", "--n-gen", "4",
                    "-t", "1", "-ngl", "99", "--rpc", endpoints, "-o", str(out))
    assert bench.returncode == 0, bench.stderr[-2000:]
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["lampe_ubatches"]["lampe"] > 0 and record["lampe_ubatches"]["exact_beyond_T"] == 0
    ev = run_cli("eval", "ppl", "-m", str(tiny_llama_f32), "--haystack", "repeat", "--length", "2T", "--method",
                 "lampe", "-t", "1", "-ngl", "99", "--rpc", endpoints, "-o", str(tmp_path / "ppl.jsonl"), "--no-plot")
    assert ev.returncode == 0, ev.stderr[-2000:]
    workers[0].kill()  # a worker gone before the command: one line
    gone = run_cli("bench", "-m", str(tiny_llama_f32), "--length", "2T", "--method", "lampe", "--n-gen", "4",
                   "-ngl", "99", "--rpc", endpoints, "-o", str(tmp_path / "b2.jsonl"))
    assert gone.returncode == 1 and "cannot reach RPC worker" in gone.stderr, gone.stderr[-2000:]
