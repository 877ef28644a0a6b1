"""Tiny random-weight GGUF models that llama.cpp loads, for tests.

Weights are seeded NumPy normals, scaled so the residual stream stays O(1)
and attention is sharp enough (q/k std 2/sqrt(n_embd)) that a wrong rotary
position shows up clearly in the logits.

Q8_0 files quantize every 2D matrix (token_embd and output included, as
llama.cpp's own quantizer does for Q8_0); 1D tensors (norms, biases) stay
F32 because ggml requires that.

A NumPy array of shape (out, in) is stored as ggml ne = [in, out].
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize

# A few dozen words as SentencePiece pieces on top of the byte tokens.
# llama.cpp's SPM tokenizer only merges adjacent pieces into a piece that
# exists, so every prefix of a word ("▁t", "▁th", "▁the") is in the vocabulary.
_WORDS = (
    "the a is of and to in it that was for on are with as be at this have from or one by"
    " word but not what all we when your can said there use an each which do how key pass"
    " number hello world user assistant 0 1 2 3 4 5 6 7 8 9"
).split()
_PIECES = sorted(
    {("▁" + w)[:n] for w in _WORDS for n in range(2, len(w) + 2)}
    | set("▁abcdefghijklmnopqrstuvwxyz0123456789.,?!"),
    key=lambda p: (len(p), p),
)

# ChatML: llama.cpp's built-in template detection recognises it (so the C
# API llama_chat_apply_template works) and it is also valid Jinja.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]


def _add_vocab(w: GGUFWriter) -> int:
    """Write an SPM ("llama") vocabulary; returns its size."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + _PIECES + _CHAT_TOKENS
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    types += [TokenType.BYTE] * 256 + [TokenType.NORMAL] * len(_PIECES) + [TokenType.CONTROL] * len(_CHAT_TOKENS)
    # SPM merges greedily by score: longer pieces get higher scores.
    scores = [0.0] * 259 + [-100.0 + len(t) for t in _PIECES] + [0.0] * len(_CHAT_TOKENS)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    return len(tokens)


_QUANT = {"Q8_0": GGMLQuantizationType.Q8_0, "Q4_0": GGMLQuantizationType.Q4_0}
_FILE_TYPE = {"F32": LlamaFileType.ALL_F32, "Q8_0": LlamaFileType.MOSTLY_Q8_0, "Q4_0": LlamaFileType.MOSTLY_Q4_0}


def _add_weight(w: GGUFWriter, name: str, a: np.ndarray, weight_type: str) -> None:
    a = a.astype(np.float32)
    if weight_type in _QUANT and a.ndim == 2:
        w.add_tensor(name, quantize(a, _QUANT[weight_type]), raw_dtype=_QUANT[weight_type])
    else:
        w.add_tensor(name, a)


def _finish(w: GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_llama(
    path: str | Path,
    *,
    arch: Literal["llama", "qwen2"] = "llama",
    weight_type: Literal["F32", "Q8_0", "Q4_0"] = "F32",
    n_ctx_train: int = 64,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_layer: int = 2,
    n_ff: int = 128,
    rope_theta: float = 10000.0,
    seed: int = 0,
) -> Path:
    """A llama (RoPE NORM) or qwen2 (RoPE NEOX, q/k/v biases) model.

    Q8_0 and Q4_0 (every 2D matrix) need n_embd and n_ff to be multiples of 32 (the block size).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    head_dim = n_embd // n_head
    n_kv = head_dim * n_head_kv

    def normal(*shape: int, std: float) -> np.ndarray:
        return rng.standard_normal(shape) * std

    def norm_weight() -> np.ndarray:
        return 1.0 + normal(n_embd, std=0.1)

    w = GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}-{weight_type.lower()}")
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(rope_theta)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(_FILE_TYPE[weight_type])
    n_vocab = _add_vocab(w)

    def add(name: str, a: np.ndarray) -> None:
        _add_weight(w, name, a, weight_type)

    qk_std = 2.0 / np.sqrt(n_embd)
    add("token_embd.weight", normal(n_vocab, n_embd, std=1.0))
    for i in range(n_layer):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm_weight())
        add(p + "attn_q.weight", normal(n_embd, n_embd, std=qk_std))
        add(p + "attn_k.weight", normal(n_kv, n_embd, std=qk_std))
        add(p + "attn_v.weight", normal(n_kv, n_embd, std=1 / np.sqrt(n_embd)))
        if arch == "qwen2":
            add(p + "attn_q.bias", normal(n_embd, std=0.5))
            add(p + "attn_k.bias", normal(n_kv, std=0.5))
            add(p + "attn_v.bias", normal(n_kv, std=0.1))
        add(p + "attn_output.weight", normal(n_embd, n_embd, std=1 / np.sqrt(n_embd)))
        add(p + "ffn_norm.weight", norm_weight())
        add(p + "ffn_gate.weight", normal(n_ff, n_embd, std=1 / np.sqrt(n_embd)))
        add(p + "ffn_up.weight", normal(n_ff, n_embd, std=1 / np.sqrt(n_embd)))
        add(p + "ffn_down.weight", normal(n_embd, n_ff, std=1 / np.sqrt(n_ff)))
    add("output_norm.weight", norm_weight())
    add("output.weight", normal(n_vocab, n_embd, std=2 / np.sqrt(n_embd)))
    _finish(w)
    return path


def write_tiny_gpt2(path: str | Path, *, n_ctx_train: int = 64, n_embd: int = 64, n_head: int = 4,
                    n_layer: int = 1, seed: int = 0) -> Path:
    """A gpt2-architecture model: learned position embeddings, no RoPE."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    n_ff = 4 * n_embd

    def normal(*shape: int, std: float = 0.05) -> np.ndarray:
        return rng.standard_normal(shape) * std

    w = GGUFWriter(path, "gpt2")
    w.add_name("tiny-gpt2")
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-5)
    w.add_file_type(LlamaFileType.ALL_F32)
    n_vocab = _add_vocab(w)

    def add(name: str, a: np.ndarray) -> None:
        _add_weight(w, name, a, False)

    add("token_embd.weight", normal(n_vocab, n_embd, std=1.0))
    add("position_embd.weight", normal(n_ctx_train, n_embd, std=1.0))
    for i in range(n_layer):
        p = f"blk.{i}."
        for norm in ("attn_norm", "ffn_norm"):
            add(p + norm + ".weight", 1.0 + normal(n_embd))
            add(p + norm + ".bias", normal(n_embd))
        add(p + "attn_qkv.weight", normal(3 * n_embd, n_embd))
        add(p + "attn_qkv.bias", normal(3 * n_embd))
        add(p + "attn_output.weight", normal(n_embd, n_embd))
        add(p + "attn_output.bias", normal(n_embd))
        add(p + "ffn_up.weight", normal(n_ff, n_embd))
        add(p + "ffn_up.bias", normal(n_ff))
        add(p + "ffn_down.weight", normal(n_embd, n_ff))
        add(p + "ffn_down.bias", normal(n_embd))
    add("output_norm.weight", 1.0 + normal(n_embd))
    add("output_norm.bias", normal(n_embd))
    add("output.weight", normal(n_vocab, n_embd, std=2 / np.sqrt(n_embd)))
    _finish(w)
    return path


def write_truncated(src: str | Path, dst: str | Path) -> Path:
    """The first half of a valid GGUF: header parses, tensor data is missing."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: len(data) // 2])
    return Path(dst)


def write_not_gguf(dst: str | Path) -> Path:
    """A file that is not GGUF at all."""
    Path(dst).write_bytes(b"this is not a gguf model\n" * 64)
    return Path(dst)
