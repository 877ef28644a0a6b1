"""Property test: no LaMPE setting the API accepts crashes llama.cpp, and every one matches the reference.

Hypothesis draws a configuration (W, S, a fixed M or a sigmoid, s, exact
attention inside the trained window or not), a model deep like real ones (24
or 32 layers), a prompt of 1 to 4T tokens, a batch size, flash attention on or
off, any K and V cache types the CLI offers, and a few generated tokens after
the prompt. Each case runs in a worker process (lampe_case_worker.py): a case
that aborts it fails here with its exit status, the worker is started again
for the next. llama.cpp may decline a case only where upstream does (a
quantized V cache needs flash attention); inside the trained window (exact
attention) the logits must be upstream's bit for bit, beyond it equal to the
float64 NumPy reference within a tolerance of float32 arithmetic.

PYLAMPE_PROPERTY_EXAMPLES sets the number of cases (default 200).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_models import write_tiny_llama
from kv_storage import QUANTIZED, KvStorage
from pylampe.cache_types import CACHE_TYPES
from reference.lampe_spec import capped, mapping_length
from reference.model import LampeArgs, Reference

T = 64  # the tiny models' trained context
N_CTX = 4 * T + 16
CASE_TIMEOUT_S = 120
EXAMPLES = int(os.environ.get("PYLAMPE_PROPERTY_EXAMPLES", "200"))
# every cache type `pylampe generate --cache-type-k/-v` offers, F32 as often as the quantized ones together
TYPES = ("f32",) * 6 + ("f16",) * 2 + tuple(t for t in CACHE_TYPES if t not in ("f32", "f16"))

# head size 64 (a quantized K is stored Hadamard-rotated) and qwen2 (NeoX RoPE, q/k/v biases) with GQA and
# head size 32; deep like real models (24 and 32 layers, what sizes the graph), and shallow
MODELS = {
    "llama-32l-hd64": dict(arch="llama", n_embd=128, n_head=2, n_head_kv=1, n_layer=32),
    "qwen2-24l-hd32-gqa": dict(arch="qwen2", n_embd=128, n_head=4, n_head_kv=2, n_layer=24),
    "llama-2l-hd64": dict(arch="llama", n_embd=128, n_head=2, n_head_kv=1, n_layer=2),
    "qwen2-2l-hd32-gqa": dict(arch="qwen2", n_embd=128, n_head=4, n_head_kv=2, n_layer=2),
}


@pytest.fixture(scope="module")
def models(model_dir: Path) -> dict[str, tuple[Path, Reference]]:
    out = {}
    for name, shape in MODELS.items():
        path = write_tiny_llama(model_dir / f"{name}.gguf", n_ctx_train=T, n_ff=128, seed=7, **shape)
        out[name] = (path, Reference(path))
    return out


class Worker:
    """A lampe_case_worker.py process; started again after a case kills it."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen[str]] = None

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("lampe_case_worker.py"))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                cwd=Path(__file__).parent,
                # threads that yield when they wait: ggml's spinning ones crawl when a core is shared
                env=dict(os.environ, OMP_WAIT_POLICY="passive"),
            )
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            code = self.proc.returncode
            pytest.fail(f"llama.cpp {'hung' if not ready else f'died (exit status {code})'} on {case}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def tolerance(case: dict[str, Any]) -> Optional[float]:
    """max |logit error| / max |logit| allowed for a case, None where no bound holds.

    The reference reads K, V and Q as llama.cpp computes with them (kv_storage.py: the cache's rounding,
    quantization and Hadamard rotation, and the conversions of ggml's matrix products when attention is a
    composition of ops). With an F32 cache what is left is float32 arithmetic. An F16 or quantized cache
    adds values that llama.cpp's float32 and the reference's float64 round to neighbouring steps; each
    such flip moves a key, value or query by a step, and over 24-32 layers flips beget flips. So deep
    models are compared with an F32 cache only, and checked for running cleanly with the others (whose
    numbers the shallow models and the op tests cover). Wrong positions or rotations give errors of order 1.
    """
    if case["type_k"] == case["type_v"] == "f32":
        return 2e-3
    if MODELS[case["model"]]["n_layer"] > 2:
        return None
    if case["type_k"] in QUANTIZED or case["type_v"] in QUANTIZED:
        return 0.1
    return 5e-3 if case["flash_attn"] else 1e-2


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    W = draw(st.integers(1, 24))
    S = draw(st.integers(0, 12))
    case: dict[str, Any] = dict(
        model=draw(st.sampled_from(sorted(MODELS))),
        W=W, S=S, s=draw(st.floats(0.8, 1.25)),
        within_window=draw(st.sampled_from(["exact", "lampe"])),
        n_prompt=draw(st.integers(1, 4 * T)),
        n_gen=draw(st.integers(0, 6)),
        n_batch=draw(st.sampled_from([1, 3, 16, 32, 64, 256])),
        type_k=draw(st.sampled_from(TYPES)),
        type_v=draw(st.sampled_from(TYPES)),
        flash_attn=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    span = T - 1 - W - S  # the largest M with M + W + S < T
    if draw(st.booleans()):
        case["M"] = draw(st.integers(1, span))
    else:
        c = draw(st.floats(1.0, span + 0.99))
        case["sigmoid"] = (draw(st.floats(1e-3, 0.1)), draw(st.floats(-4.0, 1.0)), c)
        case["m_min"] = draw(st.integers(0, int(c)))
    return case


def expected_refusal(case: dict[str, Any]) -> bool:
    # upstream llama.cpp: a quantized V cache needs flash attention
    return case["type_v"] in QUANTIZED and not case["flash_attn"]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_any_setting_runs_and_matches_the_reference(case: dict[str, Any], models: dict[str, tuple[Path, Reference]],
                                                    worker: Worker, tmp_path: Path) -> None:
    path, ref = models[case["model"]]
    n_prompt, n_gen = case["n_prompt"], case["n_gen"]
    tokens = np.random.default_rng(case["seed"]).integers(3, ref.n_vocab, n_prompt + n_gen).tolist()
    exact = case["within_window"] == "exact" and n_prompt <= T
    job = dict(case, model=str(path), tokens=tokens, n_ctx=N_CTX, exact=exact, out=str(tmp_path / "logits.npy"))
    answer = worker.run(job)

    if "refused" in answer:
        assert expected_refusal(case), f"llama.cpp refused {case}: {answer['refused']}"
        return
    assert not expected_refusal(case), "llama.cpp ran what upstream refuses"

    got = np.load(answer["logits"])
    assert np.isfinite(got).all()
    state = answer["state"]
    if exact:
        # inside the trained window: upstream attention, bit for bit
        assert state["n_ref"] == 0
        np.testing.assert_array_equal(got[:T], np.load(answer["plain_logits"])[:T])
        check_generated_beyond_T(case, tokens, got, ref)
        return

    assert state["n_ref"] == n_prompt
    M = case.get("M")
    if M is None:  # the sigmoid, in float32 on the C side: one off at an integer boundary at most
        a, b, c = case["sigmoid"]
        assert abs(state["n_map"] - capped(mapping_length(n_prompt, a, b, c, case["m_min"]), n_prompt)) <= 1
        M = state["n_map"]
    else:
        assert state["n_map"] == capped(M, n_prompt)
    tol = tolerance(case)
    if tol is None:
        return
    kv = KvStorage.llama_cpp(case["type_k"], case["type_v"], ref.head_dim, mul_mat=not case["flash_attn"])
    want = ref.logits(tokens, lampe=LampeArgs(n_prompt, case["W"], case["S"], M, case["s"]), kv=kv)
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert err < tol, f"max rel err {err:.2e} for {case}"


def check_generated_beyond_T(case: dict[str, Any], tokens: list[int], got: np.ndarray, ref: Reference) -> None:
    """Tokens generated past T after an exact prompt: LaMPE with L following the length, one step at a time
    (llama_lampe_set_ref's rule), never plain RoPE. Checked with a fixed M (the sigmoid's M may round one off
    per L in float32)."""
    tol = tolerance(case)
    if len(tokens) <= T or case.get("M") is None or tol is None:
        return
    steps = [LampeArgs(p + 1, case["W"], case["S"], capped(case["M"], p + 1), case["s"]) for p in range(T, len(tokens))]
    kv = KvStorage.llama_cpp(case["type_k"], case["type_v"], ref.head_dim, mul_mat=not case["flash_attn"])
    want = ref.logits(tokens, lampe=[None] * T + steps, kv=kv)[T:]
    # the exact rows' cells came through upstream's attention, which may round through F16
    err = float(np.abs(got[T:] - want).max() / np.abs(want).max())
    assert err < max(tol, 5e-3), f"max rel err {err:.2e} beyond T for {case}"


def test_every_cache_type_is_emulated() -> None:
    """The reference can store K and V in every type the CLI offers (else a new one would fail obscurely)."""
    assert set(CACHE_TYPES) == {"f32", "f16", *QUANTIZED}
