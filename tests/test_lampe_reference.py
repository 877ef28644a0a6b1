"""llama.cpp's LaMPE attention against the float64 NumPy reference of the spec.

Every query row of every case is compared, so each region boundary the
prompt contains (queries at i = W and i = L - r, keys at j = i - W and
j = i - L + r) is checked. The tiny model is trained on T = 64 tokens;
W = 16, S = 4, M = 24 keep M + W + S < T. Every case runs twice: flash
attention off (LaMPE composed of ggml ops) and on (the fused
ggml_flash_attn_ext_lampe op).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import llama_driver
from conftest import LOGIT_ERRORS
from gpu_tolerance import against_reference
from gguf_models import write_tiny_llama
from pylampe import _native
from llama_driver import decode, enable_lampe, llama_cpp, loaded_model, new_context, set_lampe_ref
from reference.lampe_spec import constants
from reference.model import LampeArgs, Reference

W, S, M = 16, 4, 24
ATTN_FACTOR = 0.1 * np.log(2.0) + 1.0

# max |a - b| / max |b| over all logits; LaMPE computes in F32 with an F32 KV cache, flash attention or not
# (on a GPU widened by plain attention's own difference: tests/gpu_tolerance.py)
pytestmark = pytest.mark.usefixtures("lampe_path")

TOL = {("f32", False): 1e-4, ("f16", False): 5e-3, ("f32", True): 1e-4, ("f16", True): 5e-3, ("q8_0", True): 1e-1}
# q8_0 K/V quantization alone costs ~4e-2 with plain attention on this model


def rel_err(got: np.ndarray, want: np.ndarray, *, record: bool = True) -> float:
    """max |got - want| / max |want|; recorded per test for the run's summary unless record=False."""
    err = float(np.abs(got - want).max() / np.abs(want).max())
    if record:
        test = os.environ["PYTEST_CURRENT_TEST"].split(" ")[0].split("::")[-1]
        LOGIT_ERRORS[test] = max(err, LOGIT_ERRORS.get(test, 0.0))
    return err


def prompt(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(3, 400, size=n).tolist()


@pytest.fixture(scope="module")
def ref_llama(tiny_llama_f32: Path) -> Reference:
    return Reference(tiny_llama_f32)


def lampe_logits(path: Path, tokens: list[int], L: int, *, batch: int, kv: str = "f32", fa: bool | None = None) -> np.ndarray:
    with loaded_model(path) as model, new_context(model, n_ctx=max(256, len(tokens)), n_batch=batch,
                                                  n_ubatch=batch, kv_type=kv, flash_attn=fa) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, L)
        return decode(ctx, tokens, batch_size=batch)


@pytest.mark.parametrize("L", [20, 2 * W, 2 * W + 1, 100, 8 * 64])
def test_prompt_lengths(tiny_llama_f32: Path, ref_llama: Reference, L: int) -> None:
    tokens = prompt(L)
    want = ref_llama.logits(tokens, lampe=LampeArgs(L, W, S, M, ATTN_FACTOR))
    got = lampe_logits(tiny_llama_f32, tokens, L, batch=L)
    assert rel_err(got, want) < against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens, batch=L)


def test_reference_distinguishes_lampe_from_plain(ref_llama: Reference) -> None:
    """The comparison above can fail: LaMPE changes the logits well beyond the tolerance."""
    tokens = prompt(100)
    lampe = ref_llama.logits(tokens, lampe=LampeArgs(100, W, S, M, 1.0))
    plain = ref_llama.logits(tokens)
    assert rel_err(lampe[: W + 1], plain[: W + 1], record=False) < 1e-12  # inside the window nothing moves
    assert rel_err(lampe[W + 1 :], plain[W + 1 :], record=False) > 1e-2


def test_boundaries_are_in_the_prompt() -> None:
    """The L = 100 case has queries on both sides of i = W and i = L - r."""
    r = constants(100, W, S, M).r
    assert W < 100 - r < 100


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batch_split_is_invisible(tiny_llama_f32: Path, ref_llama: Reference, batch: int) -> None:
    L = 100
    tokens = prompt(L, seed=1)
    want = ref_llama.logits(tokens, lampe=LampeArgs(L, W, S, M, ATTN_FACTOR))
    got = lampe_logits(tiny_llama_f32, tokens, L, batch=batch)
    assert rel_err(got, want) < against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens, batch=batch)


@pytest.fixture(scope="module")
def tiny_llama_hd64(model_dir: Path) -> Path:
    """Head size 64: q8_0 K needs a multiple of 32, and 64 turns on llama.cpp's Hadamard K rotation."""
    return write_tiny_llama(model_dir / "llama-hd64.gguf", n_embd=128, n_head=2, n_head_kv=1)


@pytest.mark.parametrize("kv", ["f32", "f16", "q8_0", "q8_0-no-hadamard"])
def test_cache_types(tiny_llama_hd64: Path, kv: str, lampe_path: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if kv == "q8_0-no-hadamard":
        # llama.cpp stores q8_0 K Hadamard-rotated (then LaMPE composes ggml ops); without it the fused op reads q8_0
        monkeypatch.setenv("LLAMA_ATTN_ROT_DISABLE", "1")
    kv_type = kv.split("-")[0]
    L = 150
    tokens = prompt(L, seed=2)
    ref = Reference(tiny_llama_hd64)
    want = ref.logits(tokens, lampe=LampeArgs(L, W, S, M, ATTN_FACTOR))
    if kv_type == "q8_0" and not lampe_path:
        with pytest.raises(RuntimeError, match="could not create a context"):  # llama.cpp: quantized V needs FA
            lampe_logits(tiny_llama_hd64, tokens, L, batch=64, kv=kv_type)
        return
    got = lampe_logits(tiny_llama_hd64, tokens, L, batch=64, kv=kv_type)
    tol = against_reference(TOL[(kv_type, lampe_path)], tiny_llama_hd64, ref, tokens, batch=64, kv=kv_type)
    assert rel_err(got, want) < tol
    assert rel_err(got, ref.logits(tokens), record=False) > 2 * tol  # the tolerance can tell LaMPE from plain


def test_neox_rope(tiny_qwen2_f32: Path) -> None:
    L = 150
    tokens = prompt(L, seed=3)
    ref = Reference(tiny_qwen2_f32)
    want = ref.logits(tokens, lampe=LampeArgs(L, W, S, M, ATTN_FACTOR))
    got = lampe_logits(tiny_qwen2_f32, tokens, L, batch=64)
    assert rel_err(got, want) < against_reference(TOL[("f32", False)], tiny_qwen2_f32, ref, tokens, batch=64)


def test_decode_after_prefill(tiny_llama_f32: Path, ref_llama: Reference) -> None:
    """Generated tokens keep L; every decode step matches the reference (spec section 4)."""
    L, n_gen = 90, 40  # n_gen > W: the middle region slides and the start region grows
    tokens = prompt(L + n_gen, seed=4)
    want = ref_llama.logits(tokens, lampe=LampeArgs(L, W, S, M, ATTN_FACTOR))
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, L)
        prefill = decode(ctx, tokens[:L], batch_size=L)
        steps = [decode(ctx, [t], batch_size=1, pos0=L + k) for k, t in enumerate(tokens[L:])]
    assert rel_err(prefill, want[:L]) < against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens[:L],
                                                          batch=L)
    tol_step = against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens, batch=1)
    for k, step in enumerate(steps):
        assert rel_err(step, want[L + k : L + k + 1]) < tol_step, f"decode step {k}"


def test_second_prompt_recomputes_mapping(tiny_llama_f32: Path, ref_llama: Reference) -> None:
    n1, n2 = 80, 50
    tokens = prompt(n1 + n2, seed=5)
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, n1)
        first = decode(ctx, tokens[:n1], batch_size=32)
        set_lampe_ref(ctx, n1 + n2)
        second = decode(ctx, tokens[n1:], batch_size=32, pos0=n1)
    tol = against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens, batch=32)
    assert rel_err(first, ref_llama.logits(tokens[:n1], lampe=LampeArgs(n1, W, S, M, ATTN_FACTOR))) < tol
    # the first turn's keys were computed with L = n1; the second turn's queries use L = n1 + n2
    turns = [LampeArgs(n1, W, S, M, ATTN_FACTOR)] * n1 + [LampeArgs(n1 + n2, W, S, M, ATTN_FACTOR)] * n2
    want = ref_llama.logits(tokens, lampe=turns)[n1:]
    assert rel_err(second, want) < tol
    stale = ref_llama.logits(tokens, lampe=LampeArgs(n1, W, S, M, ATTN_FACTOR))[n1:]
    assert rel_err(second, stale, record=False) > 1e-2  # the mapping really changed


@pytest.mark.parametrize("kv_unified", [False, True])
def test_two_sequences_of_different_lengths(tiny_llama_f32: Path, ref_llama: Reference, kv_unified: bool) -> None:
    a, b = prompt(120, seed=6), prompt(70, seed=7)
    with loaded_model(tiny_llama_f32) as model, new_context(model, n_ctx=512, n_seq_max=2,
                                                            kv_unified=kv_unified) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, len(a), seq_id=0)
        set_lampe_ref(ctx, len(b), seq_id=1)
        got_a = decode(ctx, a[:60], batch_size=60, seq_id=0)
        got_b = decode(ctx, b, batch_size=70, seq_id=1)
        got_a = np.concatenate([got_a, decode(ctx, a[60:], batch_size=60, pos0=60, seq_id=0)])
    tol = TOL[("f32", False)]
    assert rel_err(got_a, ref_llama.logits(a, lampe=LampeArgs(len(a), W, S, M, ATTN_FACTOR))) < \
        against_reference(tol, tiny_llama_f32, ref_llama, a, batch=60)
    assert rel_err(got_b, ref_llama.logits(b, lampe=LampeArgs(len(b), W, S, M, ATTN_FACTOR))) < \
        against_reference(tol, tiny_llama_f32, ref_llama, b, batch=70)


def test_exact_state_is_upstream(tiny_llama_f32: Path) -> None:
    """n_ref = 0 (exact attention, used inside the trained window) is bit-identical to LaMPE off, and so is
    LLAMA_LAMPE_REF_PLAIN beyond T; n_ref = 0 beyond T is not (LaMPE derives L there)."""
    tokens = prompt(100, seed=8)
    with loaded_model(tiny_llama_f32) as model:
        with new_context(model) as ctx:
            plain = decode(ctx, tokens, batch_size=100)
        with new_context(model) as ctx:
            plain_inside = decode(ctx, tokens[:60], batch_size=60)
        with new_context(model) as ctx:
            enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
            inside = decode(ctx, tokens[:60], batch_size=60)
        with new_context(model) as ctx:
            enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
            set_lampe_ref(ctx, _native.LLAMA_LAMPE_REF_PLAIN)
            asked = decode(ctx, tokens, batch_size=100)
        with new_context(model) as ctx:
            enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
            derived = decode(ctx, tokens, batch_size=100)
    np.testing.assert_array_equal(inside, plain_inside)
    np.testing.assert_array_equal(asked, plain)
    assert rel_err(derived, plain, record=False) > 1e-1


def test_after_removing_the_tail_of_a_sequence(tiny_llama_f32: Path, ref_llama: Reference) -> None:
    """Cells freed by a cache edit and refilled with other tokens: regions follow the stored positions."""
    first, other = prompt(100, seed=9), prompt(40, seed=10)
    tokens = first[:60] + other
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, 100)
        decode(ctx, first, batch_size=50)
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, 60, -1)
        set_lampe_ref(ctx, 100)  # the new prompt's L (a trim would have kept it anyway)
        got = decode(ctx, other, batch_size=40, pos0=60)
    want = ref_llama.logits(tokens, lampe=LampeArgs(100, W, S, M, ATTN_FACTOR))[60:]
    assert rel_err(got, want) < against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, tokens, batch=50)


def test_after_copying_a_sequence(tiny_llama_f32: Path, ref_llama: Reference) -> None:
    """A prefix shared by two sequences (seq_cp), each continued with its own tokens and L."""
    shared, tail_a, tail_b = prompt(70, seed=11), prompt(30, seed=12), prompt(50, seed=13)
    args = LampeArgs(120, W, S, M, ATTN_FACTOR)  # both sequences end at 120 tokens
    with loaded_model(tiny_llama_f32) as model, new_context(model, n_ctx=512, n_seq_max=2, kv_unified=True) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, 120, seq_id=0)
        set_lampe_ref(ctx, 120, seq_id=1)
        decode(ctx, shared, batch_size=70, seq_id=0)
        llama_cpp.llama_memory_seq_cp(llama_cpp.llama_get_memory(ctx), 0, 1, -1, -1)
        set_lampe_ref(ctx, 120, seq_id=1)  # the copy edited sequence 1, which reset its L
        got_b = decode(ctx, tail_b, batch_size=50, pos0=70, seq_id=1)
        got_a = decode(ctx, tail_a + tail_b[:20], batch_size=50, pos0=70, seq_id=0)
    want_b = ref_llama.logits(shared + tail_b, lampe=args)[70:]
    want_a = ref_llama.logits(shared + tail_a + tail_b[:20], lampe=args)[70:]
    tol = against_reference(TOL[("f32", False)], tiny_llama_f32, ref_llama, shared + tail_a + tail_b[:20], batch=50)
    assert rel_err(got_b, want_b) < tol
    assert rel_err(got_a, want_a) < tol
