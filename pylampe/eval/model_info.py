"""What the long-context methods need to know about a model, read from its GGUF metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# llama.cpp's defaults when a GGUF file leaves these out.
DEFAULT_ROPE_FREQ_BASE = 10000.0


@dataclass(frozen=True)
class ModelInfo:
    """T and the rotary embedding's base and dimension (d, the number of rotated dims)."""

    n_ctx_train: int
    rope_freq_base: float
    rope_dim: int

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "ModelInfo":
        """From ``llama_cpp.Llama.metadata`` (every value a string)."""
        arch = meta.get("general.architecture", "")

        def key(name: str) -> str | None:
            return meta.get(f"{arch}.{name}")

        n_ctx_train = int(key("context_length") or 0)
        if n_ctx_train <= 0:
            raise ValueError("the model does not say its trained context length")
        rope_dim = key("rope.dimension_count")
        if rope_dim is None:  # llama.cpp's default: the whole head is rotated
            rope_dim = int(key("embedding_length") or 0) // max(1, int(key("attention.head_count") or 1))
        return cls(
            n_ctx_train=n_ctx_train,
            rope_freq_base=float(key("rope.freq_base") or DEFAULT_ROPE_FREQ_BASE),
            rope_dim=int(rope_dim),
        )
