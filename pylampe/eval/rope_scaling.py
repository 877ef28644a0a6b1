"""Baselines that only change the rotary embedding's frequencies: llama.cpp context options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import llama_cpp

from .method import Method, Setup, scale_factor
from .model_info import ModelInfo


@dataclass(frozen=True)
class Plain(Method):
    """Upstream RoPE, no scaling: the baseline that fails beyond T."""

    name = "none"

    def setup(self, model: ModelInfo, length: int) -> Setup:
        return Setup({"lampe": None})


@dataclass(frozen=True)
class Linear(Method):
    """Position interpolation: positions squeezed by the factor s = L / T.

    rope_freq_scale = 1 / s (= T / L), so position p rotates like p * T / L.
    """

    name = "linear"
    factor: Optional[float] = None

    def setup(self, model: ModelInfo, length: int) -> Setup:
        scale = 1.0 / scale_factor(model, length, self.factor)
        return Setup({"lampe": None, "rope_freq_scale": scale}, {"rope_freq_scale": scale})


@dataclass(frozen=True)
class NTK(Method):
    """NTK-aware scaling: a larger frequency base, s = L / T.

    base' = base * s^(d / (d - 2)), d = rotary dims: the lowest frequency is
    interpolated by s while the highest stay (almost) as trained.
    """

    name = "ntk"
    factor: Optional[float] = None

    def setup(self, model: ModelInfo, length: int) -> Setup:
        s = scale_factor(model, length, self.factor)
        d = model.rope_dim
        base = model.rope_freq_base * s ** (d / (d - 2))
        return Setup({"lampe": None, "rope_freq_base": base}, {"rope_freq_base": base})


@dataclass(frozen=True)
class YaRN(Method):
    """llama.cpp's YaRN with s = L / T: rope_scaling_type = YARN, yarn_orig_ctx = T,
    rope_freq_scale = 1 / s. Ramp (beta_fast/slow), extrapolation mix and
    attention factor stay at llama.cpp's defaults.
    """

    name = "yarn"
    factor: Optional[float] = None

    def setup(self, model: ModelInfo, length: int) -> Setup:
        scale = 1.0 / scale_factor(model, length, self.factor)
        return Setup(
            {
                "lampe": None,
                "rope_scaling_type": llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
                "yarn_orig_ctx": model.n_ctx_train,
                "rope_freq_scale": scale,
            },
            {"rope_freq_scale": scale, "yarn_orig_ctx": model.n_ctx_train},
        )
