"""The C side's LaMPE constants (llama_lampe_state_init, llama_lampe_map) by hand and against the reference.

llama.cpp computes M(L), map, r, b1 and b2 once on the host; these tests tie
that one copy to hand-worked values and to tests/reference/lampe_spec.py.
"""

from __future__ import annotations

import itertools

import pytest

import pylampe  # noqa: F401  (loads our library)
from pylampe import _native
from reference.lampe_spec import capped, constants, map_pos, mapping_length

LLAMA3 = (1.0493097e-04, -2.4666380, 6204.4093)


def params(W: int, S: int, M: int = 0, sigmoid: tuple[float, float, float] = LLAMA3, m_min: int = 0, s: float = 1.0):
    p = _native.llama_lampe_default_params()
    p.n_window, p.n_start, p.n_map, p.n_map_min, p.attn_factor = W, S, M, m_min, s
    p.map_a, p.map_b, p.map_c = sigmoid
    return p


def state(L: int, W: int, S: int, M: int):
    return _native.llama_lampe_state_init(params(W, S, M), L)


def test_small_case_by_hand() -> None:
    # L=11, M=4, S=2, W=3 (worked out in test_lampe_spec.py): map = 0 0 0 1 1 2 2 2 3 3 4 | 4 4
    st = state(11, 3, 2, 4)
    assert [_native.llama_lampe_map(st, p) for p in range(13)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert (st.n_ref, st.n_map, st.r, st.b1, st.b2) == (11, 4, 2, 1, 4)
    assert st.multi_grained  # L = 11 >= 2W = 6


def test_exact_map_where_float32_code_differs() -> None:
    st = state(541, 32, 2, 180)
    assert [_native.llama_lampe_map(st, 3 * k) for k in range(181)] == list(range(181))
    assert (st.r, st.b1, st.b2) == (2, 21, 338)


def test_short_prompt_and_exact_state() -> None:
    assert not state(2 * 16 - 1, 16, 4, 24).multi_grained
    assert state(2 * 16, 16, 4, 24).multi_grained
    exact = _native.llama_lampe_state_init(params(16, 4, 24, s=1.5), 0)
    assert (exact.n_ref, exact.attn_factor, exact.multi_grained) == (0, 1.0, False)


def test_sigmoid_mapping_length_by_hand() -> None:
    # Llama-3 row: floor(6204.4093 / (1 + exp(-(1.0493097e-4 * 8192 - 2.466638)))) = 1036
    assert _native.llama_lampe_state_init(params(1024, 200), 8192).n_map == 1036
    # continuous threshold rule: never below n_map_min
    assert _native.llama_lampe_state_init(params(1024, 200, m_min=1536), 8192).n_map == 1536
    # saturates at floor(c) for long inputs
    assert _native.llama_lampe_state_init(params(1024, 200, m_min=1536), 10**9).n_map == 6204


@pytest.mark.parametrize("W,S", [(16, 4), (32, 2), (64, 10), (1024, 200)])
def test_matches_reference_on_a_grid(W: int, S: int) -> None:
    for L, M in itertools.product([2 * W, 2 * W + 1, 3 * W + 7, 541, 4096, 12345], [W // 2 + 1, 180, 1536, 6000]):
        st = state(L, W, S, M)
        assert st.n_map == capped(M, L)
        assert (st.r, st.b1, st.b2) == constants(L, W, S, M), (L, W, S, M)
        for p in (0, 1, S, W, L // 2, L - 1, L + 5, 3 * L):
            assert _native.llama_lampe_map(st, p) == map_pos(p, L, capped(M, L))


def test_mapping_length_is_capped_at_L_minus_1() -> None:
    """M > L - 1 would move keys forward (map(p) > p); M is capped so that map(p) <= p for every p."""
    st = state(1200, 512, 200, 1536)  # the CLI's --lampe-window 512 --lampe-mapping-length 1536 on a 1.2K prompt
    assert st.multi_grained and st.n_map == 1199
    assert all(_native.llama_lampe_map(st, p) == p for p in (0, 1, 600, 1199, 5000))
    assert (st.r, st.b1, st.b2) == constants(1200, 512, 200, 1199)


def test_start_span_beyond_the_prompt() -> None:
    """S >= L: b2 maps a negative position, rounded down like the reference's integer division."""
    st = state(40, 16, 45, 24)
    assert (st.r, st.b1, st.b2) == constants(40, 16, 45, 24)
    assert _native.llama_lampe_map(st, -6) == map_pos(-6, 40, 24) == -4


def test_sigmoid_matches_reference() -> None:
    for L in range(1000, 140000, 997):
        got = _native.llama_lampe_state_init(params(1024, 200, m_min=1536), L).n_map
        # the C side stores a, b, c as float32: allow the rare one-off at an integer boundary
        assert abs(got - capped(mapping_length(L, *LLAMA3, 1536), L)) <= 1, L


@pytest.mark.parametrize(
    "field,value",
    [("n_window", 0), ("n_start", -1), ("attn_factor", 0.0), ("attn_factor", 101.0), ("map_c", -1.0),
     ("n_map_min", -5)],
)
def test_invalid_params_name_the_field(field: str, value: float) -> None:
    p = params(1024, 200)
    setattr(p, field, value)
    msg = _native.llama_lampe_params_check(None, p)
    assert msg is not None
    assert field in msg.decode()
