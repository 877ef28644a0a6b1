"""LaMPE position arithmetic, exactly as in the spec (sections 1-3).

All position arithmetic is exact integer arithmetic; only M(L) uses floats.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

Region = Literal["local", "start", "middle"]


def mapping_length(L: int, a: float, b: float, c: float, m_min: int) -> int:
    """M(L) = max(m_min, floor(c / (1 + exp(-(a*L + b))))), as the spec writes it (see capped())."""
    return max(m_min, math.floor(c / (1.0 + math.exp(-(a * L + b)))))


def capped(M: int, L: int) -> int:
    """pylampe's rule where the spec is silent: M <= L - 1, so that map(p) <= p (compression, never expansion)."""
    return min(M, L - 1)


def map_pos(p: int, L: int, M: int) -> int:
    """Compress positions 0..L-1 onto 0..M; extends linearly past L."""
    return (p * M) // (L - 1)


class Constants(NamedTuple):
    r: int
    b1: int
    b2: int


def constants(L: int, W: int, S: int, M: int) -> Constants:
    M = capped(M, L)
    # r: last index of the map-group that contains S.
    r = S
    while r + 1 < L and map_pos(r, L, M) == map_pos(r + 1, L, M):
        r += 1
    b1 = 0 if L <= W else W - (map_pos(W, L, M) + 1)
    b2 = (L - 1 - r) - map_pos(L - 1 - r, L, M) - b1
    return Constants(r, b1, b2)


def region(i: int, j: int, L: int, W: int, r: int) -> Region:
    """Region of key j for query i (j <= i), tested in the spec's order."""
    if i - j <= W:
        return "local"
    if j <= i - L + r:
        return "start"
    return "middle"


def rotary_positions(i: int, j: int, L: int, W: int, S: int, M: int) -> tuple[int, int]:
    """(query position, key position) that RoPE uses for the pair (i, j)."""
    if L < 2 * W:  # short prompt: plain causal attention
        return i, j
    c = constants(L, W, S, M)
    M = capped(M, L)
    reg = region(i, j, L, W, c.r)
    if reg == "local":
        return i, j
    if reg == "start":
        return i - c.b2, j
    return map_pos(i, L, M) + c.b1, map_pos(j, L, M)
