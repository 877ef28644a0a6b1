#!/usr/bin/env python3
"""A random-weight Q4_0 GGUF of a real model's shape, for speed measurements (not for its outputs).

    python benchmarks/random_gguf.py --shape llama3-8b --out /tmp/llama3-8b-shape-q4_0.gguf

Llama-3-8B's shape (32 layers, n_embd 4096, 32 heads, 8 KV heads, head size 128, n_ff 14336, RoPE base
500000, trained context T = 8192) with a 32000-token SentencePiece vocabulary; every 2D matrix Q4_0, norms
F32. Written in seconds rather than the Python quantizer's hours: the Q4_0 blocks are cut from one pool of
random blocks (random 4-bit quants, one scale 1/(4.6 sqrt(n_embd)) so that activations stay O(1)), each
tensor a view at its own offset; GGUFWriter then streams them to the file (~4.6 GB for llama3-8b).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType

SHAPES = {
    "llama3-8b": dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=32000,
                      n_ctx_train=8192, rope_theta=500000.0),
    # for trying the benchmark on a CPU
    "tiny": dict(n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=1024,
                 n_ctx_train=256, rope_theta=10000.0),
}

QK4_0 = 32
Q4_0_BYTES = 18  # fp16 scale + 16 bytes of 4-bit quants


def add_vocab(w: GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece ("llama") vocabulary of n_vocab tokens: control, byte and filler pieces."""
    specials = ["<unk>", "<s>", "</s>"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581w{i}" for i in range(n_vocab - len(tokens))]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    types += [TokenType.NORMAL] * (n_vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(n_vocab - 259)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def write_model(path: Path, shape: str, seed: int = 0) -> Path:
    s = SHAPES[shape]
    n_embd, n_ff, n_vocab = s["n_embd"], s["n_ff"], s["n_vocab"]
    head = n_embd // s["n_head"]
    n_kv = head * s["n_head_kv"]
    rng = np.random.default_rng(seed)

    # the largest matrix, in blocks, plus room for each tensor to start somewhere else
    most = max(n_vocab * n_embd, n_ff * n_embd) // QK4_0
    slack = most // 4
    pool = np.empty((most + slack, Q4_0_BYTES), dtype=np.uint8)
    pool[:, 2:] = rng.integers(0, 256, size=(pool.shape[0], Q4_0_BYTES - 2), dtype=np.uint8)
    scale = np.array([1.0 / (4.6 * np.sqrt(n_embd))], dtype=np.float16)
    pool[:, :2] = scale.view(np.uint8)

    def q4_0(rows: int, cols: int) -> np.ndarray:
        nb = rows * cols // QK4_0
        off = int(rng.integers(0, slack))
        return pool[off:off + nb].reshape(rows, cols // QK4_0 * Q4_0_BYTES)

    w = GGUFWriter(str(path), "llama")
    w.add_name(f"random-{shape}-q4_0")
    w.add_context_length(s["n_ctx_train"])
    w.add_embedding_length(n_embd)
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(n_ff)
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(s["rope_theta"])
    w.add_rope_dimension_count(head)
    w.add_file_type(LlamaFileType.MOSTLY_Q4_0)
    add_vocab(w, n_vocab)

    def add(name: str, a: np.ndarray) -> None:
        if a.dtype == np.uint8:
            w.add_tensor(name, a, raw_dtype=GGMLQuantizationType.Q4_0)
        else:
            w.add_tensor(name, a)

    ones = np.ones(n_embd, dtype=np.float32)
    add("token_embd.weight", q4_0(n_vocab, n_embd))
    for i in range(s["n_layer"]):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", ones)
        add(p + "attn_q.weight", q4_0(n_embd, n_embd))
        add(p + "attn_k.weight", q4_0(n_kv, n_embd))
        add(p + "attn_v.weight", q4_0(n_kv, n_embd))
        add(p + "attn_output.weight", q4_0(n_embd, n_embd))
        add(p + "ffn_norm.weight", ones)
        add(p + "ffn_gate.weight", q4_0(n_ff, n_embd))
        add(p + "ffn_up.weight", q4_0(n_ff, n_embd))
        add(p + "ffn_down.weight", q4_0(n_embd, n_ff))
    add("output_norm.weight", ones)
    add("output.weight", q4_0(n_vocab, n_embd))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    write_model(args.out, args.shape, args.seed)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
