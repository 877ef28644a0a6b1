"""What LaMPE does with sequence edits and with what it cannot run: keep, derive or refuse, never abort.

- No sequence is decoded beyond the trained context T with plain RoPE while LaMPE is enabled (the rule in
  llama_lampe_set_ref's comment, llama-ext.h): a sequence without L that a batch takes beyond T gets
  L = its length after that batch, and L then follows its length.
- Removing cells at the tail or inside keeps L; clearing the memory, removing the start, copying cells into
  the sequence, moving positions or loading a state resets L, to be derived again (or taken from a sequence
  whose cells it shares).
- llama.cpp returns an error for positions outside [0, n_ctx), non-causal attention, parameters out of
  range, a span M + W + S beyond the trained context, and sequences that share cells or tokens in one
  ubatch but map them differently; the context stays usable afterwards.
- Every test ends with the counters' word that no ubatch went beyond T without LaMPE.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llama_driver import decode, enable_lampe, llama_cpp, loaded_model, new_context, set_lampe_ref
from reference.model import LampeArgs, Reference
from test_lampe_reference import ATTN_FACTOR, TOL, M, S, W, prompt, rel_err

from pylampe import _native

pytestmark = pytest.mark.usefixtures("lampe_path")

F32 = TOL[("f32", False)]


def exact_tol(flash_attn: bool) -> float:
    """Rows in exact (upstream) attention: upstream's flash attention reads an F32 cache as F16."""
    return TOL[("f16", True)] if flash_attn else F32


def args(L: int) -> LampeArgs:
    return LampeArgs(L, W, S, M, ATTN_FACTOR)


@pytest.fixture(scope="module")
def ref(tiny_llama_f32: Path) -> Reference:
    return Reference(tiny_llama_f32)


@contextmanager
def lampe_context(path: Path, **kw: Any) -> Iterator[Any]:
    with loaded_model(path) as model, new_context(model, **kw) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        yield ctx
        assert counters(ctx).n_ubatch_exact_beyond == 0


def n_ref(ctx: Any, seq_id: int = 0) -> int:
    return _native.llama_lampe_get_state(ctx, seq_id).n_ref


def counters(ctx: Any) -> Any:
    return _native.llama_lampe_get_counters(ctx)


def memory(ctx: Any) -> Any:
    return llama_cpp.llama_get_memory(ctx)


# --- edits --------------------------------------------------------------------------------------------------


def test_clear_resets_L(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    other = prompt(40, seed=21)
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=20), batch_size=50)
        llama_cpp.llama_memory_clear(memory(ctx), True)
        assert n_ref(ctx) == 0
        got = decode(ctx, other, batch_size=40)  # inside T = 64: exact
        assert counters(ctx).n_ref_reset == 1
    assert rel_err(got, ref.logits(other)) < exact_tol(lampe_path)
    assert rel_err(got, ref.logits(other, lampe=args(100)), record=False) > 1e-1  # a stale L would show


def test_a_sequence_without_L_gets_one_beyond_T(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    """A caller that never sets L: the batch that crosses T ends the prompt, then L follows the length."""
    tokens = prompt(103, seed=36)
    with lampe_context(tiny_llama_f32) as ctx:
        first = decode(ctx, tokens[:50], batch_size=50)  # positions 0..49: exact
        assert n_ref(ctx) == 0
        crossing = decode(ctx, tokens[50:100], batch_size=50, pos0=50)  # reaches 99 >= T
        assert n_ref(ctx) == 100
        generated = decode(ctx, tokens[100:], batch_size=1, pos0=100)
        assert n_ref(ctx) == 103
        c = counters(ctx)
        assert (c.n_ref_derived, c.n_ubatch_exact, c.n_ubatch_lampe) == (4, 1, 4)
    want = ref.logits(tokens, lampe=[None] * 50 + [args(100)] * 50 + [args(101), args(102), args(103)])
    got = np.concatenate([first, crossing, generated])
    # the exact rows' cells (upstream's flash attention rounds through F16) feed the LaMPE rows too
    assert rel_err(got, want) < exact_tol(lampe_path)
    plain = ref.logits(tokens)[50:]
    assert rel_err(got[50:], plain, record=False) > 1e-1  # plain RoPE beyond T would show


def test_exact_inside_T_switches_to_LaMPE_beyond_it(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    """n_ref = 0 asked for a prompt inside T (pylampe's within_window="exact") does not carry past T."""
    tokens = prompt(70, seed=37)
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 0)
        inside = decode(ctx, tokens[:60], batch_size=60)
        beyond = decode(ctx, tokens[60:], batch_size=1, pos0=60)
        assert n_ref(ctx) == 70
    want = ref.logits(tokens, lampe=[None] * 64 + [args(L) for L in range(65, 71)])
    assert rel_err(np.concatenate([inside, beyond]), want) < exact_tol(lampe_path)


def test_plain_RoPE_beyond_T_only_when_asked(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    """LLAMA_LAMPE_REF_PLAIN: the baseline in the same context, counted as such."""
    tokens = prompt(100, seed=50)
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, _native.LLAMA_LAMPE_REF_PLAIN)
        got = decode(ctx, tokens, batch_size=50)
        assert n_ref(ctx) == 0 and counters(ctx).n_ubatch_exact_beyond == 1
    assert rel_err(got, ref.logits(tokens)) < exact_tol(lampe_path)


def test_removing_the_tail_keeps_L(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    """A truncation or rollback (eval's teacher forcing, speculative decoding) continues the same prompt."""
    first, other = prompt(100, seed=22), prompt(40, seed=23)
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, first, batch_size=50)
        llama_cpp.llama_memory_seq_rm(memory(ctx), 0, 60, -1)
        assert n_ref(ctx) == 100
        got = decode(ctx, other, batch_size=40, pos0=60)
        assert n_ref(ctx) == 100
        assert (counters(ctx).n_ref_kept, counters(ctx).n_ref_reset) == (1, 0)
    want = ref.logits(first[:60] + other, lampe=args(100))[60:]
    assert rel_err(got, want) < F32
    plain = ref.logits(first[:60] + other, lampe=[args(100)] * 60 + [None] * 40)[60:]
    assert rel_err(got, plain, record=False) > 1e-1  # the old rule (exact attention after the edit)


def test_removing_cells_inside_keeps_L(tiny_llama_f32: Path) -> None:
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=38), batch_size=50)
        assert llama_cpp.llama_memory_seq_rm(memory(ctx), 0, 40, 50)
        assert n_ref(ctx) == 100
        decode(ctx, prompt(5, seed=39), batch_size=5, pos0=100)
        assert n_ref(ctx) == 100


def test_removing_the_start_resets_and_derives_L(tiny_llama_f32: Path) -> None:
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=40), batch_size=50)
        assert llama_cpp.llama_memory_seq_rm(memory(ctx), 0, 0, 20)
        assert n_ref(ctx) == 0
        decode(ctx, prompt(10, seed=41), batch_size=10, pos0=100)
        assert n_ref(ctx) == 110  # positions 20..109: beyond T, L from the last position
        assert (counters(ctx).n_ref_reset, counters(ctx).n_ref_derived) == (1, 1)


def test_moving_the_first_position_resets_and_derives_L(tiny_llama_f32: Path) -> None:
    with lampe_context(tiny_llama_f32, n_ctx=512) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=42), batch_size=50)
        llama_cpp.llama_memory_seq_add(memory(ctx), 0, 0, -1, 30)  # cells now at 30..129
        assert n_ref(ctx) == 0
        decode(ctx, prompt(20, seed=43), batch_size=20, pos0=130)
        assert n_ref(ctx) == 150
        assert (counters(ctx).n_ref_reset, counters(ctx).n_ref_derived) == (1, 1)


def test_compressing_positions_from_the_start_keeps_L(tiny_llama_f32: Path) -> None:
    """seq_div from position 0 (Self-Extend's grouping) keeps the first position: a trim by the rule."""
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=48), batch_size=50)
        llama_cpp.llama_memory_seq_div(memory(ctx), 0, 0, -1, 2)  # cells now at 0..49
        assert n_ref(ctx) == 100
        decode(ctx, prompt(20, seed=49), batch_size=20, pos0=50)
        assert n_ref(ctx) == 100
        assert counters(ctx).n_ref_kept == 1


def test_removing_nothing_keeps_L(tiny_llama_f32: Path, ref: Reference) -> None:
    """llama-cpp-python removes the cells past n_tokens before every eval: usually none."""
    tokens = prompt(110, seed=24)
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        first = decode(ctx, tokens[:100], batch_size=50)
        llama_cpp.llama_memory_seq_rm(memory(ctx), -1, 100, -1)
        assert n_ref(ctx) == 100
        generated = decode(ctx, tokens[100:], batch_size=1, pos0=100)
    assert rel_err(np.concatenate([first, generated]), ref.logits(tokens, lampe=args(100))) < F32


def test_a_copy_that_shares_cells_takes_their_L(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    """seq_cp into a sequence of the same (unified) cache: a shared cell has one mapping."""
    shared, tail = prompt(70, seed=25), prompt(30, seed=26)
    with lampe_context(tiny_llama_f32, n_ctx=512, n_seq_max=2, kv_unified=True) as ctx:
        set_lampe_ref(ctx, 100, seq_id=0)
        decode(ctx, shared, batch_size=70, seq_id=0)
        llama_cpp.llama_memory_seq_cp(memory(ctx), 0, 1, -1, -1)
        got = decode(ctx, tail, batch_size=30, pos0=70, seq_id=1)
        assert (n_ref(ctx, 0), n_ref(ctx, 1)) == (100, 100)
    assert rel_err(got, ref.logits(shared + tail, lampe=args(100))[70:]) < F32


def test_a_copy_into_its_own_stream_derives_L(tiny_llama_f32: Path, ref: Reference) -> None:
    shared, tail = prompt(70, seed=44), prompt(30, seed=45)
    with lampe_context(tiny_llama_f32, n_ctx=512, n_seq_max=2) as ctx:
        set_lampe_ref(ctx, 90, seq_id=0)
        decode(ctx, shared, batch_size=70, seq_id=0)
        llama_cpp.llama_memory_seq_cp(memory(ctx), 0, 1, -1, -1)
        got = decode(ctx, tail, batch_size=30, pos0=70, seq_id=1)
        assert (n_ref(ctx, 0), n_ref(ctx, 1)) == (90, 100)
    want = ref.logits(shared + tail, lampe=[args(90)] * 70 + [args(100)] * 30)[70:]
    assert rel_err(got, want) < F32


def test_loading_a_state_resets_and_derives_L(tiny_llama_f32: Path, ref: Reference, lampe_path: bool) -> None:
    first, other = prompt(100, seed=27), prompt(40, seed=28)
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, first[:60], batch_size=60)
        size = llama_cpp.llama_state_get_size(ctx)
        state = (ctypes.c_uint8 * size)()
        assert llama_cpp.llama_state_get_data(ctx, state, size) == size
        decode(ctx, first[60:], batch_size=40, pos0=60)
        assert llama_cpp.llama_state_set_data(ctx, state, size) == size
        assert n_ref(ctx) == 0
        derived = decode(ctx, other, batch_size=40, pos0=60)  # reaches 99: L = 100 for this batch
        assert n_ref(ctx) == 100
    want = ref.logits(first[:60] + other, lampe=args(100))[60:]
    assert rel_err(derived, want) < F32


def test_loading_a_sequence_state_resets_L(tiny_llama_f32: Path) -> None:
    with lampe_context(tiny_llama_f32) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(60, seed=46), batch_size=60)
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        state = (ctypes.c_uint8 * size)()
        assert llama_cpp.llama_state_seq_get_data(ctx, state, size, 0) == size
        assert llama_cpp.llama_state_seq_set_data(ctx, state, size, 0) == size
        assert n_ref(ctx) == 0
        decode(ctx, prompt(10, seed=47), batch_size=10, pos0=60)
        assert n_ref(ctx) == 70
        assert counters(ctx).n_ref_reset == 1


# --- refusals -----------------------------------------------------------------------------------------------


def decode_fails(ctx: Any, tokens: list[int], **kw: Any) -> bool:
    try:
        decode(ctx, tokens, **kw)
    except RuntimeError as e:
        return "llama_decode returned" in str(e)
    return False


def test_positions_beyond_the_context_are_refused(tiny_llama_f32: Path, ref: Reference) -> None:
    tokens = prompt(50, seed=29)
    with lampe_context(tiny_llama_f32, n_ctx=256) as ctx:
        set_lampe_ref(ctx, 50)
        assert decode_fails(ctx, tokens, batch_size=50, pos0=230)  # positions 230..279 >= n_ctx
        got = decode(ctx, tokens, batch_size=50)  # the context still works
    assert rel_err(got, ref.logits(tokens, lampe=args(50))) < F32


def test_positions_shifted_beyond_the_context_are_refused(tiny_llama_f32: Path) -> None:
    with lampe_context(tiny_llama_f32, n_ctx=256) as ctx:
        set_lampe_ref(ctx, 100)
        decode(ctx, prompt(100, seed=30), batch_size=50)
        llama_cpp.llama_memory_seq_add(memory(ctx), 0, 0, -1, 200)  # cells now at 200..299
        set_lampe_ref(ctx, 120)  # the shift reset L; set again, LaMPE would meet positions past n_ctx
        assert decode_fails(ctx, prompt(5, seed=31), batch_size=5, pos0=300)


def test_non_causal_attention_is_refused(tiny_llama_f32: Path) -> None:
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        llama_cpp.llama_set_causal_attn(ctx, False)
        params = _native.llama_lampe_default_params()
        params.n_window, params.n_start, params.n_map = W, S, M
        assert _native.llama_lampe_enable(ctx, params) == -3
        llama_cpp.llama_set_causal_attn(ctx, True)
        assert _native.llama_lampe_enable(ctx, params) == 0
        set_lampe_ref(ctx, 50)
        llama_cpp.llama_set_causal_attn(ctx, False)  # switched off after LaMPE was enabled
        assert decode_fails(ctx, prompt(50, seed=32), batch_size=50)


def test_reference_length_out_of_range(tiny_llama_f32: Path) -> None:
    with loaded_model(tiny_llama_f32) as model, new_context(model, n_ctx=256) as ctx:
        assert _native.llama_lampe_set_ref(ctx, 0, 10) == -1  # LaMPE not enabled
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        assert _native.llama_lampe_set_ref(ctx, 0, 256) == 0
        for seq_id, L in [(0, 257), (0, -2), (1, 10), (-1, 10)]:
            assert _native.llama_lampe_set_ref(ctx, seq_id, L) == -2, (seq_id, L)


def test_span_beyond_the_trained_context_is_refused(tiny_llama_f32: Path) -> None:
    with loaded_model(tiny_llama_f32) as model, new_context(model) as ctx:
        params = _native.llama_lampe_default_params()
        params.n_window, params.n_start, params.n_map = W, S, 64 - W - S  # M + W + S = T
        why = _native.llama_lampe_params_check(model, params)
        assert why is not None and b"trained context 64" in why
        assert _native.llama_lampe_enable(ctx, params) == -2
        params.n_map -= 1
        assert _native.llama_lampe_params_check(model, params) is None
        assert _native.llama_lampe_enable(ctx, params) == 0


def test_shared_cells_mapped_differently_are_refused(tiny_llama_f32: Path, ref: Reference) -> None:
    """A prefix shared by two sequences with different L: one ubatch cannot rotate its cells both ways."""
    shared, tail_a, tail_b = prompt(70, seed=33), prompt(30, seed=34), prompt(10, seed=35)
    with lampe_context(tiny_llama_f32, n_ctx=512, n_seq_max=2, kv_unified=True) as ctx:
        set_lampe_ref(ctx, 100, seq_id=0)
        decode(ctx, shared, batch_size=70, seq_id=0)
        llama_cpp.llama_memory_seq_cp(memory(ctx), 0, 1, -1, -1)
        set_lampe_ref(ctx, 80, seq_id=1)
        batch = llama_cpp.llama_batch_init(2, 0, 1)
        try:
            batch.n_tokens = 2
            for k, (tok, pos, seq) in enumerate([(tail_a[0], 70, 0), (tail_b[0], 70, 1)]):
                batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.seq_id[k][0], batch.logits[k] = tok, pos, 1, seq, True
            assert llama_cpp.llama_decode(ctx, batch) != 0
        finally:
            llama_cpp.llama_batch_free(batch)
        # apart, each sequence sees the shared cells with its own mapping
        got_a = decode(ctx, tail_a, batch_size=30, pos0=70, seq_id=0)
        got_b = decode(ctx, tail_b, batch_size=10, pos0=70, seq_id=1)
    assert rel_err(got_a, ref.logits(shared + tail_a, lampe=args(100))[70:]) < F32
    want_b = ref.logits(shared + tail_b, lampe=[args(100)] * 70 + [args(80)] * 10)[70:]
    assert rel_err(got_b, want_b) < F32
