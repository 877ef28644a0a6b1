"""Each method's parameter derivation, and method specs."""

from __future__ import annotations

import pytest

from pylampe import LampeConfig  # first: binds llama_cpp to pylampe's library
import llama_cpp
from pylampe.eval import NTK, Lampe, Linear, ModelInfo, Plain, SelfExtend, YaRN, parse_method, parse_methods
from pylampe.eval.self_extend import GroupedPrefill

MODEL = ModelInfo(n_ctx_train=4096, rope_freq_base=10000.0, rope_dim=128)


def test_model_info_from_metadata() -> None:
    meta = {"general.architecture": "llama", "llama.context_length": "64",
            "llama.embedding_length": "64", "llama.attention.head_count": "4"}
    assert ModelInfo.from_metadata(meta) == ModelInfo(64, 10000.0, 16)
    meta |= {"llama.rope.freq_base": "500000.0", "llama.rope.dimension_count": "8"}
    assert ModelInfo.from_metadata(meta) == ModelInfo(64, 500000.0, 8)
    with pytest.raises(ValueError, match="trained context"):
        ModelInfo.from_metadata({"general.architecture": "llama"})


def test_plain() -> None:
    assert Plain().setup(MODEL, 16384).llama_kwargs == {"lampe": None}


def test_linear_interpolates_by_t_over_l() -> None:
    assert Linear().setup(MODEL, 16384).llama_kwargs["rope_freq_scale"] == 0.25
    assert Linear().setup(MODEL, 2048).llama_kwargs["rope_freq_scale"] == 1.0  # never extrapolates
    assert Linear(factor=2).setup(MODEL, 16384).llama_kwargs["rope_freq_scale"] == 0.5


def test_ntk_base() -> None:
    base = NTK().setup(MODEL, 16384).llama_kwargs["rope_freq_base"]
    assert base == pytest.approx(10000.0 * 4 ** (128 / 126))
    # the lowest frequency base^(-(d-2)/d) is interpolated by exactly the factor
    assert base ** (-126 / 128) == pytest.approx(10000.0 ** (-126 / 128) / 4)
    assert NTK(factor=8).setup(MODEL, 100).params["rope_freq_base"] == pytest.approx(10000.0 * 8 ** (128 / 126))


def test_yarn() -> None:
    kwargs = YaRN().setup(MODEL, 32768).llama_kwargs
    assert kwargs["rope_scaling_type"] == llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN
    assert kwargs["yarn_orig_ctx"] == 4096
    assert kwargs["rope_freq_scale"] == 0.125
    assert "yarn_ext_factor" not in kwargs  # llama.cpp's default


@pytest.mark.parametrize("length, group, window", [
    (4096, 1, 2048),    # fits: nothing grouped
    (6144, 2, 2048),    # ceil(4096 / 2048)
    (16384, 7, 2044),   # ceil(14336 / 2048) = 7, W rounded down to a multiple of 7
    (32768, 15, 2040),
])
def test_self_extend_defaults(length: int, group: int, window: int) -> None:
    setup = SelfExtend().setup(MODEL, length)
    assert setup.params == {"group": group, "window": window}
    assert setup.prefill == GroupedPrefill(window, group)
    # the paper's reach (T - W) * G + W covers L
    assert (MODEL.n_ctx_train - window) * group + window >= length


def test_self_extend_overrides() -> None:
    assert SelfExtend(group=4, window=30).setup(MODEL, 100).params == {"group": 4, "window": 28}
    with pytest.raises(ValueError, match="window"):
        SelfExtend(window=4096).setup(MODEL, 100)


def test_lampe() -> None:
    kwargs = Lampe().setup(MODEL, 16384).llama_kwargs
    assert kwargs["lampe"] == LampeConfig.for_model(4096)
    cfg = Lampe(overrides=(("window", 512),)).setup(MODEL, 16384).llama_kwargs["lampe"]
    assert cfg.window == 512 and cfg.n_ctx_train == 4096
    base = LampeConfig.preset("llama2")
    assert Lampe(config=base).setup(MODEL, 8192).llama_kwargs["lampe"] == base


def test_parse() -> None:
    assert parse_method("none") == Plain()
    assert parse_method("ntk:factor=4") == NTK(factor=4)
    assert parse_method("self-extend:group=4:window=32") == SelfExtend(group=4, window=32)
    assert parse_method("lampe:window=8:within_window=lampe") == Lampe(
        overrides=(("window", 8), ("within_window", "lampe")))
    methods = parse_methods(["none,linear", "none", "yarn:factor=2.5"])
    assert [m.label for m in methods] == ["none", "linear", "yarn:factor=2.5"]
    for bad, message in [("rope", "unknown method"), ("ntk:alpha=2", "bad parameter"),
                         ("linear:factor", "bad parameter")]:
        with pytest.raises(ValueError, match=message):
            parse_method(bad)
