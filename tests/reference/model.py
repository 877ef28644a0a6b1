"""Float64 forward pass of the tiny llama/qwen2 GGUF models, with optional LaMPE.

Follows llama.cpp's conventions (not HF's): GGUF q/k weights of the llama
arch are already laid out for RoPE NORM (adjacent pairs), qwen2 uses NEOX
(pairs k, k + d/2); theta_k = base^(-2k/n_rot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from .lampe_spec import capped, constants, map_pos

if TYPE_CHECKING:
    from kv_storage import KvStorage

NEOX_ARCHS = {"qwen2"}


@dataclass(frozen=True)
class LampeArgs:
    """Reference length L, local window W, start span S, mapping length M, factor s."""

    L: int
    W: int
    S: int
    M: int
    s: float = 1.0


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _rope(x: np.ndarray, pos: np.ndarray, base: float, n_rot: int, neox: bool) -> np.ndarray:
    """Rotate x [n, heads, head_dim] at integer positions pos [n]."""
    half = n_rot // 2
    theta = base ** (-2.0 * np.arange(half) / n_rot)
    ang = pos.astype(np.float64)[:, None, None] * theta  # [n, 1, half]
    cos, sin = np.cos(ang), np.sin(ang)
    out = x.copy()
    if neox:
        i0, i1 = np.arange(half), np.arange(half) + half
    else:
        i0, i1 = np.arange(0, n_rot, 2), np.arange(1, n_rot, 2)
    a, b = x[..., i0], x[..., i1]
    out[..., i0] = a * cos - b * sin
    out[..., i1] = a * sin + b * cos
    return out


def region_positions(n: int, lampe: LampeArgs | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per region: (mask [n, n] of causal pairs in it, query positions [n], key positions [n]).

    The regions come in the order local, start, middle (or one, plain causal attention); the first two
    score the keys at their exact positions, as cached.
    """
    i = np.arange(n)
    causal = i[None, :] <= i[:, None]
    if lampe is None or lampe.L < 2 * lampe.W:
        return [(causal, i, i)]
    L, W, M = lampe.L, lampe.W, capped(lampe.M, lampe.L)
    r, b1, b2 = constants(L, W, lampe.S, M)
    I, J = i[:, None], i[None, :]
    local = causal & (I - J <= W)
    start = causal & ~local & (J <= I - L + r)
    middle = causal & ~local & ~start
    mapped = np.array([map_pos(int(p), L, M) for p in i])  # exact Python ints
    return [(local, i, i), (start, i - b2, i), (middle, mapped + b1, mapped)]


class Reference:
    def __init__(self, path: str | Path) -> None:
        reader = GGUFReader(path)
        self.arch: str = reader.get_field("general.architecture").contents()

        def kv(key: str) -> Any:
            return reader.get_field(f"{self.arch}.{key}").contents()

        self.n_head: int = kv("attention.head_count")
        self.n_head_kv: int = kv("attention.head_count_kv")
        self.n_layer: int = kv("block_count")
        self.eps: float = kv("attention.layer_norm_rms_epsilon")
        self.rope_base: float = kv("rope.freq_base")
        self.n_rot: int = kv("rope.dimension_count")
        self.neox = self.arch in NEOX_ARCHS
        self.t: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            data = np.asarray(t.data)
            if t.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F64):
                data = dequantize(data, t.tensor_type)
            self.t[t.name] = data.astype(np.float64)
        self.n_vocab, self.n_embd = self.t["token_embd.weight"].shape
        self.head_dim = self.n_embd // self.n_head

    def _attention(self, il: int, h: np.ndarray, lampe: LampeArgs | Sequence[LampeArgs] | None,
                   kv: KvStorage | None) -> np.ndarray:
        t, p, n, hd = self.t, f"blk.{il}.", len(h), self.head_dim

        def proj(name: str, heads: int) -> np.ndarray:
            y = h @ t[p + name + ".weight"].T
            if p + name + ".bias" in t:
                y = y + t[p + name + ".bias"]
            return y.reshape(n, heads, hd)

        q, k, v = proj("attn_q", self.n_head), proj("attn_k", self.n_head_kv), proj("attn_v", self.n_head_kv)
        # the cache holds keys rotated at their exact positions; regions rotate them further from there
        pos = np.arange(n)
        k = _rope(k, pos, self.rope_base, self.n_rot, self.neox)
        if kv is not None:
            k, v = kv.k(k), kv.v(v)
        # GQA: query head h reads kv head h // group.
        group = self.n_head // self.n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)

        # per query row: its LaMPE arguments (rows of a later chat turn see a larger L)
        rows_args = list(lampe) if isinstance(lampe, (list, tuple)) else [lampe] * n
        scores = np.full((self.n_head, n, n), -np.inf)
        for args in dict.fromkeys(rows_args):
            rows = np.array([a == args for a in rows_args])
            s2 = 1.0 if args is None else args.s * args.s
            for ir, (mask, q_pos, k_pos) in enumerate(region_positions(n, args)):
                qr = _rope(q, q_pos, self.rope_base, self.n_rot, self.neox)
                kr = _rope(k, k_pos - pos, self.rope_base, self.n_rot, self.neox)
                if kv is not None and ir < 2:  # local and start pairs multiply the cached keys themselves
                    qr = kv.q(qr)
                kq = np.matmul(qr.transpose(1, 0, 2), kr.transpose(1, 2, 0)) * s2  # [h, i, j]
                scores = np.where((mask & rows[:, None])[None], kq, scores)
        scores /= np.sqrt(hd)
        scores -= scores.max(axis=-1, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(axis=-1, keepdims=True)
        if kv is not None:
            w = kv.weights(w)
        o = np.matmul(w, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(n, self.n_embd)
        return o @ t[p + "attn_output.weight"].T

    def logits(self, tokens: list[int], *, lampe: LampeArgs | Sequence[LampeArgs] | None = None,
               kv: KvStorage | None = None) -> np.ndarray:
        """Logits [n_tokens, n_vocab] for tokens at positions 0..n-1 of one sequence.

        lampe may give one LampeArgs per token: a chat's earlier turn was evaluated
        with its own (smaller) reference length, and its cached keys keep that.
        kv: what the KV cache does to K and V (None: they are read as computed).
        """
        t = self.t
        x = t["token_embd.weight"][np.asarray(tokens)]
        for il in range(self.n_layer):
            p = f"blk.{il}."
            x = x + self._attention(il, _rms_norm(x, t[p + "attn_norm.weight"], self.eps), lampe, kv)
            h = _rms_norm(x, t[p + "ffn_norm.weight"], self.eps)
            ff = _silu(h @ t[p + "ffn_gate.weight"].T) * (h @ t[p + "ffn_up.weight"].T)
            x = x + ff @ t[p + "ffn_down.weight"].T
        return _rms_norm(x, t["output_norm.weight"], self.eps) @ t["output.weight"].T
