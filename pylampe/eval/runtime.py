"""Loading the model under test: its tokenizer and metadata once, then one context per setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from ..llama import Llama
from .method import Setup
from .model_info import ModelInfo


@dataclass
class Runtime:
    """A GGUF model plus the llama.cpp options every method shares (threads, GPU layers, ...)."""

    model_path: Path
    llama_kwargs: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._vocab = Llama(str(self.model_path), lampe=None, vocab_only=True, verbose=False)
        self.info = ModelInfo.from_metadata(self._vocab.metadata)

    def tokenize(self, text: str, bos: bool = True) -> List[int]:
        return self._vocab.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def detokenize(self, tokens: List[int]) -> str:
        return self._vocab.detokenize(tokens).decode("utf-8", errors="replace")

    def load(self, setup: Setup, n_ctx: int) -> Llama:
        """The model with the setup's options and room for ``n_ctx`` tokens."""
        return Llama(str(self.model_path), n_ctx=n_ctx, verbose=False,
                     **self.llama_kwargs, **setup.llama_kwargs)

    def close(self) -> None:
        self._vocab.close()
