"""The reference's LaMPE arithmetic against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from reference.lampe_spec import constants, map_pos, mapping_length, region, rotary_positions
from reference.model import LampeArgs, region_positions

# Worked example: L=11, M=4, S=2, W=3.
#   map(p) = 4p // 10:  p    0 1 2 3 4 5 6 7 8 9 10 | 11 12
#                       map  0 0 0 1 1 2 2 2 3 3  4 |  4  4
#   r  : S=2, map(2)=0 != map(3)=1                     -> r = 2
#   b1 : W - (map(3) + 1) = 3 - 2                      -> b1 = 1
#   b2 : (10 - 2) - map(8) - b1 = 8 - 3 - 1            -> b2 = 4
L, M, S, W = 11, 4, 2, 3


def test_map_small_case() -> None:
    assert [map_pos(p, L, M) for p in range(13)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]


def test_constants_small_case() -> None:
    assert constants(L, W, S, M) == (2, 1, 4)


def test_b1_is_zero_when_L_le_W() -> None:
    # L=3, W=3, M=2: b1 = 0; map(p) = p, r = S = 1; b2 = (2-1) - 1 - 0 = 0.
    assert constants(3, 3, 1, 2) == (1, 0, 0)


@pytest.mark.parametrize(
    "i,expected",
    [
        # Last prompt token i=10: local 7..10, start j <= 10-11+2 = 1 (r keys), middle 2..6.
        (10, ["start"] * 2 + ["middle"] * 5 + ["local"] * 4),
        # Early prompt token i=5: start needs j <= -4, empty.
        (5, ["middle"] * 2 + ["local"] * 4),
        # Generated token i=12: start j <= 3, middle 4..8, local 9..12.
        (12, ["start"] * 4 + ["middle"] * 5 + ["local"] * 4),
    ],
)
def test_regions_small_case(i: int, expected: list[str]) -> None:
    assert [region(i, j, L, W, 2) for j in range(i + 1)] == expected


def test_rotary_positions_small_case() -> None:
    # i=10: start q at 10-b2 = 6; middle q at map(10)+b1 = 5, k at map(j).
    got = [rotary_positions(10, j, L, W, S, M) for j in range(11)]
    assert got == [(6, 0), (6, 1), (5, 0), (5, 1), (5, 1), (5, 2), (5, 2), (10, 7), (10, 8), (10, 9), (10, 10)]
    # Generated i=12: start q at 8, middle q at map(12)+1 = 5.
    assert rotary_positions(12, 3, L, W, S, M) == (8, 3)
    assert rotary_positions(12, 8, L, W, S, M) == (5, 3)


def test_boundary_keys_are_disjoint() -> None:
    # j = i - W is local only; j = i - L + r (outside the window) is start only.
    assert region(10, 7, L, W, 2) == "local"
    assert region(10, 1, L, W, 2) == "start"
    assert region(10, 2, L, W, 2) == "middle"


def test_short_prompt_is_plain_causal() -> None:
    # L < 2W: exact positions everywhere; L = 2W already uses LaMPE.
    assert all(rotary_positions(i, j, 5, 3, 1, 2) == (i, j) for i in range(8) for j in range(i + 1))
    assert rotary_positions(5, 0, 6, 3, 1, 2) != (5, 0)


def test_exact_map_where_float32_code_differs() -> None:
    # L=541, M=180: map(3k) = 540k // 540 = k exactly (float32 code gets k-1 for some k).
    assert [map_pos(3 * k, 541, 180) for k in range(181)] == list(range(181))
    # Hence r = 2 for S = 2 (map(2) = 0, map(3) = 1); float32 would give r = 3 or more.
    # b1 = 32 - (5760//540 + 1) = 32 - 11 = 21; b2 = 538 - 96840//540 - 21 = 538 - 179 - 21 = 338.
    assert constants(541, 32, 2, 180) == (2, 21, 338)
    # S = 3: map(3..5) = 1, map(6) = 2 -> r = 5; b2 = 535 - 535*180//540 - 21 = 535 - 178 - 21.
    assert constants(541, 32, 3, 180) == (5, 21, 336)


def test_mapping_length() -> None:
    assert mapping_length(0, 0.0, 0.0, 100.0, 10) == 50  # floor(100 / 2)
    assert mapping_length(0, 0.0, 0.0, 100.0, 60) == 60  # m_min wins
    assert mapping_length(10**9, 1.0, 0.0, 99.9, 0) == 99  # saturates at floor(c)
    # Llama-3 row at L=8192: 6204.4093 / (1 + exp(2.466638 - 0.859594)) = 1036.1 (the spec's "about 1036").
    assert mapping_length(8192, 1.0493097e-04, -2.4666380, 6204.4093, 0) == 1036


def test_vectorised_regions_match_scalar_spec() -> None:
    n = 20  # past L: covers generated tokens too
    args = LampeArgs(L=L, W=W, S=S, M=M)
    q_pos = np.full((n, n), -999)
    k_pos = np.full((n, n), -999)
    for mask, qp, kp in region_positions(n, args):
        q_pos = np.where(mask, qp[:, None], q_pos)
        k_pos = np.where(mask, kp[None, :], k_pos)
    for i in range(n):
        for j in range(i + 1):
            assert (q_pos[i, j], k_pos[i, j]) == rotary_positions(i, j, L, W, S, M)
        assert (q_pos[i, i + 1 :] == -999).all()  # no future keys
