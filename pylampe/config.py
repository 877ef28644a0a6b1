"""LaMPE parameters: validation, the authors' presets and a default for any model.

Pure Python and no I/O, so a configuration can be built and checked without
loading a model. Notation follows docs/lampe-algorithm.md: T trained context,
L reference length (prompt length), W local window, S start span, M mapping
length, s attention factor.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Literal, Optional, Tuple, Union

if TYPE_CHECKING:
    from ._native import llama_lampe_params

WithinWindow = Literal["exact", "lampe"]

# The reference code's benchmark setting: logits scaled by s^2.
DEFAULT_ATTN_FACTOR = 0.1 * math.log(2) + 1

# Llama-3's fitted slope and offset; the derived default rescales the slope to T.
_LLAMA3_A = 1.0493097e-04
_LLAMA3_B = -2.4666380


def _f32(x: float) -> float:
    """x rounded to float32, as the C side stores it."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class LampeConfig:
    """LaMPE settings for one model.

    The mapping length is either fixed (``mapping_length``) or, by default,
    length-aware: with ``sigmoid = (a, b, c)``

        M(L) = max(mapping_min, floor(c / (1 + exp(-(a*L + b)))))

    The paper's Llama-2/3 settings use M = 1536 below 8192 tokens and the
    sigmoid above, which makes M jump down from 1536 to about 1036 at 8192
    and climb back only near 12.9K tokens. Taking the larger of the two
    instead keeps M(L) continuous and non-decreasing in L.

    ``within_window="exact"`` keeps upstream attention (bit-for-bit, s = 1)
    for prompts that fit the trained context (L <= T) and applies LaMPE only
    beyond it; ``"lampe"`` applies LaMPE at every length, as the paper does.

    When ``n_ctx_train`` (T) is set, the widest relative span LaMPE can use,
    max M + W + S, must stay below T.
    """

    window: int = 1024
    start: int = 200
    mapping_length: Optional[int] = None
    sigmoid: Tuple[float, float, float] = (_LLAMA3_A, _LLAMA3_B, 6204.4093)
    mapping_min: int = 1536
    attn_factor: float = DEFAULT_ATTN_FACTOR
    within_window: WithinWindow = "exact"
    n_ctx_train: Optional[int] = None

    def __post_init__(self) -> None:
        if not _is_int(self.window) or self.window < 1:
            raise ValueError(f"lampe window must be a positive integer, got {self.window!r}")
        if not _is_int(self.start) or self.start < 0:
            raise ValueError(f"lampe start must be a non-negative integer, got {self.start!r}")
        if self.mapping_length is not None and (
            not _is_int(self.mapping_length) or self.mapping_length < 1
        ):
            raise ValueError(
                f"lampe mapping_length must be a positive integer or None, got {self.mapping_length!r}"
            )
        sig = self.sigmoid
        if isinstance(sig, list):  # accept lists, store a hashable tuple
            sig = tuple(sig)
            object.__setattr__(self, "sigmoid", sig)
        if (
            not isinstance(sig, tuple)
            or len(sig) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sig)
            or not all(math.isfinite(v) for v in sig)
            or sig[2] <= 0
        ):
            raise ValueError(
                f"lampe sigmoid must be three finite numbers (a, b, c) with c > 0, got {sig!r}"
            )
        if not _is_int(self.mapping_min) or self.mapping_min < 0:
            raise ValueError(
                f"lampe mapping_min must be a non-negative integer, got {self.mapping_min!r}"
            )
        if (
            not isinstance(self.attn_factor, (int, float))
            or isinstance(self.attn_factor, bool)
            or not 0 < self.attn_factor <= 100  # logits scale by s^2; NaN fails this too
        ):
            raise ValueError(
                f"lampe attn_factor must be a number in (0, 100], got {self.attn_factor!r}"
            )
        if self.within_window not in ("exact", "lampe"):
            raise ValueError(
                f"lampe within_window must be 'exact' or 'lampe', got {self.within_window!r}"
            )
        if self.n_ctx_train is not None:
            if not _is_int(self.n_ctx_train) or self.n_ctx_train < 1:
                raise ValueError(
                    f"lampe n_ctx_train must be a positive integer, got {self.n_ctx_train!r}"
                )
            span = self.max_mapping_length + self.window + self.start
            if span >= self.n_ctx_train:
                raise ValueError(
                    "lampe mapping_length + window + start must stay below the trained context "
                    f"T = {self.n_ctx_train}, got {self.max_mapping_length} + {self.window} + "
                    f"{self.start} = {span}"
                )

    @property
    def max_mapping_length(self) -> int:
        """The largest M(L) over all L (the sigmoid stays below c)."""
        if self.mapping_length is not None:
            return self.mapping_length
        return max(self.mapping_min, math.floor(_f32(self.sigmoid[2])))

    @classmethod
    def preset(cls, name: str) -> "LampeConfig":
        """One of the paper's settings: see ``PRESETS``."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(
                f"lampe preset must be one of {', '.join(PRESETS)}, got {name!r}"
            ) from None

    @classmethod
    def derived(cls, n_ctx_train: int) -> "LampeConfig":
        """The default for a model with trained context T (no preset).

        W = min(1024, T // 8), S = min(200, T // 40), and a sigmoid that uses
        nearly all of the window beyond T: capacity c = T - W - S - max(1, T // 16)
        (so max M + W + S stays T/16 below T), slope a = 5.96 / T and offset
        b = -4.86, so that M(T) = 0.75 c, M(1.25 T) = 0.93 c and M(2 T) ~ c;
        mapping_min = min(1536, T // 4) as in the paper's table; attention
        factor s = 1.

        Why not the Llama-3 fit scaled to T: on SmolLM2-135M (T = 8192) its
        M(10K) = 1536 misses a pass key at 10K tokens that M = 6000 finds.
        Why s = 1 and not the presets' 0.1 ln 2 + 1: in the README's sweep at
        2T on the same model, s = 1 lowers perplexity from 26.70 to 25.66
        (23.69 instead of 24.67 on the first T positions, where exact
        attention gives 23.59) and retrieves the pass key as often.
        """
        if not _is_int(n_ctx_train) or n_ctx_train < 8:
            raise ValueError(
                f"lampe n_ctx_train must be an integer >= 8, got {n_ctx_train!r}"
            )
        t = n_ctx_train
        window, start = min(1024, t // 8), min(200, t // 40)
        return cls(
            window=window,
            start=start,
            sigmoid=(5.96 / t, -4.86, float(t - window - start - max(1, t // 16))),
            mapping_min=min(1536, t // 4),
            attn_factor=1.0,
            n_ctx_train=t,
        )

    @classmethod
    def for_model(cls, n_ctx_train: int, preset: Optional[str] = None) -> "LampeConfig":
        """The configuration ``lampe="auto"`` uses: the named preset, else ``derived(T)``.

        A preset is re-validated against the model's own T.
        """
        if preset is None:
            return cls.derived(n_ctx_train)
        return dataclasses.replace(cls.preset(preset), n_ctx_train=n_ctx_train)

    def to_params(self) -> "llama_lampe_params":
        """The C struct ``llama_lampe_params`` (imports the native library)."""
        from ._native import llama_lampe_params

        a, b, c = self.sigmoid
        return llama_lampe_params(
            n_window=self.window,
            n_start=self.start,
            n_map=self.mapping_length or 0,
            map_a=a,
            map_b=b,
            map_c=c,
            n_map_min=self.mapping_min,
            attn_factor=self.attn_factor,
        )


# The paper's settings (docs/lampe-algorithm.md, section 1), with W = 1024, S = 200.
PRESETS: Dict[str, LampeConfig] = {
    "llama2": LampeConfig(
        sigmoid=(8.673006e-05, -0.6480123, 2489.1056), mapping_min=1536, n_ctx_train=4096
    ),
    "llama3": LampeConfig(
        sigmoid=(1.0493097e-04, -2.4666380, 6204.4093), mapping_min=1536, n_ctx_train=8192
    ),
    "mistral": LampeConfig(
        sigmoid=(1.0493097e-04, -2.4666380, 24576.0), mapping_min=1536, n_ctx_train=32768
    ),
    "llama3.1": LampeConfig(
        sigmoid=(4.5052611e-05, -2.7885769, 82358.524), mapping_min=0, n_ctx_train=131072
    ),
}


def build_lampe_config(
    n_ctx_train: int, preset: Optional[str] = None, **overrides: Any
) -> LampeConfig:
    """``LampeConfig.for_model(T, preset)`` with the given fields replaced (None: keep).

    Raises:
        ValueError: an invalid combination, naming the field.
    """
    if overrides.get("mapping_length") is not None and overrides.get("sigmoid") is not None:
        raise ValueError("a fixed mapping length and a sigmoid exclude each other")
    base = LampeConfig.for_model(n_ctx_train, preset)
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def lampe_setting(
    n_ctx_train: int, preset: Optional[str] = None, **overrides: Any
) -> Union[Literal["auto"], LampeConfig]:
    """``"auto"`` when no LaMPE parameter was asked for (LaMPE where the model allows it,
    upstream attention elsewhere), else the configuration, which refuses a model it cannot run on.

    Raises:
        ValueError: an invalid combination, naming the field.
    """
    if preset is None and all(v is None for v in overrides.values()):
        return "auto"
    if n_ctx_train <= 0:
        raise ValueError("the model does not say its trained context length: LaMPE parameters cannot apply")
    return build_lampe_config(n_ctx_train, preset, **overrides)


# pylampe.Llama's lampe=: "auto" (LaMPE where the model allows it), a configuration (LaMPE or an
# error), or None (upstream attention)
LampeSetting = Union[Literal["auto"], LampeConfig, None]
