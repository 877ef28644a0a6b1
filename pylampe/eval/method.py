"""What a long-context method is: Llama constructor kwargs plus a way to evaluate the prompt."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence

import numpy as np

from .decoder import Decoder, LogitsSink
from .model_info import ModelInfo

# Evaluates a prompt from position 0 and returns its last token's logits.
Prefill = Callable[[Decoder, Sequence[int], Optional[LogitsSink]], np.ndarray]


def plain_prefill(decoder: Decoder, tokens: Sequence[int], sink: Optional[LogitsSink]) -> np.ndarray:
    """Every token at its own position."""
    return decoder.decode(tokens, sink)


@dataclass(frozen=True)
class Setup:
    """A method made concrete for one model and target length."""

    llama_kwargs: Dict[str, Any]
    # The derived parameters, JSON-ready, for the records.
    params: Dict[str, Any] = field(default_factory=dict)
    prefill: Prefill = plain_prefill


class Method:
    """Base of the method dataclasses: ``setup`` for a model's T and a target length L.

    L is the longest sequence the context must handle (prompt plus generated
    tokens). Fields left at None are derived from T and L.
    """

    name: ClassVar[str]

    def setup(self, model: ModelInfo, length: int) -> Setup:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The name plus every field that differs from its default: ``ntk:factor=4``."""
        parts = [self.name]
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value}")
        return ":".join(parts)


def scale_factor(model: ModelInfo, length: int, factor: Optional[float]) -> float:
    """The context extension factor: ``factor`` when given, else max(1, L / T)."""
    return factor if factor is not None else max(1.0, length / model.n_ctx_train)
