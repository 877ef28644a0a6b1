"""LaMPE itself, as a method next to the baselines."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ..config import LampeConfig
from .method import Method, Setup
from .model_info import ModelInfo


@dataclass(frozen=True)
class Lampe(Method):
    """pylampe.Llama with ``config`` (default: ``LampeConfig.for_model(T)``, as lampe="auto"),
    then ``overrides``: (field, value) pairs of LampeConfig such as (("window", 8),).
    """

    name = "lampe"
    config: Optional[LampeConfig] = None
    overrides: Tuple[Tuple[str, Any], ...] = ()

    def setup(self, model: ModelInfo, length: int) -> Setup:
        base = self.config or LampeConfig.for_model(model.n_ctx_train)
        config = dataclasses.replace(base, **dict(self.overrides))
        return Setup({"lampe": config}, dataclasses.asdict(config))

    @property
    def label(self) -> str:
        return ":".join([self.name, *(f"{k}={v}" for k, v in self.overrides)])
