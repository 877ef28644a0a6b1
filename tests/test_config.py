"""LampeConfig: validation, presets, the derived default and M(L)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pylampe import PRESETS, LampeConfig
from pylampe import _native


def mapping_length_at(config: LampeConfig, n_ref: int) -> int:
    """M(L) as llama.cpp computes it (the one copy of the formula)."""
    return _native.llama_lampe_state_init(config.to_params(), n_ref).n_map


def test_defaults_are_the_papers_llama3_setting() -> None:
    c = LampeConfig()
    assert (c.window, c.start, c.mapping_length, c.mapping_min) == (1024, 200, None, 1536)
    assert c.sigmoid == (1.0493097e-04, -2.4666380, 6204.4093)
    assert c.attn_factor == pytest.approx(0.1 * math.log(2) + 1)
    assert c.within_window == "exact"


def test_error_message_names_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"^lampe window must be a positive integer, got -3$"):
        LampeConfig(window=-3)


@pytest.mark.parametrize(
    "field, value",
    [
        ("window", 0),
        ("window", 1.5),
        ("window", True),
        ("start", -1),
        ("mapping_length", 0),
        ("sigmoid", (1.0, 2.0)),
        ("sigmoid", (1.0, 2.0, -5.0)),
        ("sigmoid", (1.0, float("nan"), 5.0)),
        ("mapping_min", -1),
        ("attn_factor", 0.0),
        ("attn_factor", float("inf")),
        ("attn_factor", 101.0),
        ("within_window", "sometimes"),
        ("n_ctx_train", 0),
    ],
)
def test_invalid_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^lampe {field} must be"):
        LampeConfig(**{field: value})


def test_span_must_stay_below_trained_context() -> None:
    with pytest.raises(ValueError, match=r"must stay below the trained context T = 4096"):
        LampeConfig(n_ctx_train=4096)  # 6204 + 1024 + 200 >= 4096
    LampeConfig(mapping_length=2800, n_ctx_train=4096)  # 2800 + 1224 < 4096


def test_frozen_and_sigmoid_list_becomes_tuple() -> None:
    c = LampeConfig(sigmoid=[1e-4, -2.0, 3000.0])
    assert c.sigmoid == (1e-4, -2.0, 3000.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.window = 5  # type: ignore[misc]


def test_presets_match_the_papers_table() -> None:
    table = {
        "llama2": (4096, (8.673006e-05, -0.6480123, 2489.1056), 1536),
        "llama3": (8192, (1.0493097e-04, -2.4666380, 6204.4093), 1536),
        "mistral": (32768, (1.0493097e-04, -2.4666380, 24576.0), 1536),
        "llama3.1": (131072, (4.5052611e-05, -2.7885769, 82358.524), 0),
    }
    assert set(PRESETS) == set(table)
    for name, (t, sigmoid, minimum) in table.items():
        c = LampeConfig.preset(name)
        assert (c.n_ctx_train, c.sigmoid, c.mapping_min) == (t, sigmoid, minimum)
        assert (c.window, c.start) == (1024, 200)
        assert c.max_mapping_length + c.window + c.start < t


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match=r"lampe preset must be one of"):
        LampeConfig.preset("gpt5")


def test_for_model_revalidates_a_preset_against_the_model() -> None:
    assert LampeConfig.for_model(32768, "llama3").n_ctx_train == 32768
    with pytest.raises(ValueError, match="trained context T = 8192"):
        LampeConfig.for_model(8192, "mistral")


@pytest.mark.parametrize("t", [8, 16, 40, 64, 100, 512, 2048, 4096, 8192, 32768, 131072, 10**6])
def test_derived_default_keeps_span_below_t(t: int) -> None:
    c = LampeConfig.for_model(t)
    assert c.n_ctx_train == t
    assert c.window >= 1
    assert c.max_mapping_length + c.window + c.start < t


def test_derived_default_at_8192_by_hand() -> None:
    c = LampeConfig.derived(8192)
    assert (c.window, c.start, c.mapping_min, c.attn_factor) == (1024, 200, 1536, 1.0)
    assert c.sigmoid == pytest.approx((5.96 / 8192, -4.86, 8192 - 1024 - 200 - 512))
    # M(T) = floor(6456 / (1 + exp(-(5.96 - 4.86)))) = 4843, M(10240) = floor(6456 / (1 + exp(-(7.45 - 4.86)))) = 6005
    assert mapping_length_at(c, 8192) == 4843
    assert mapping_length_at(c, 10240) == 6005


def test_derived_default_rejects_tiny_contexts() -> None:
    with pytest.raises(ValueError, match="n_ctx_train"):
        LampeConfig.derived(4)


@pytest.mark.parametrize("name", ["llama2", "llama3", "mistral"])
def test_threshold_rule_is_continuous(name: str) -> None:
    c = PRESETS[name]
    if name != "mistral":
        # The reference code jumps from 1536 down to the sigmoid (~1036) at 8192.
        assert math.floor(c.sigmoid[2] / (1 + math.exp(-(c.sigmoid[0] * 8192 + c.sigmoid[1])))) < 1536
        assert mapping_length_at(c, 8191) == mapping_length_at(c, 8192) == 1536
    ns = range(1, 200_000, 97)
    ms = [mapping_length_at(c, n) for n in ns]
    assert all(a <= b for a, b in zip(ms, ms[1:]))
    assert all(m >= min(1536, n - 1) for n, m in zip(ns, ms))  # M <= L - 1: the cap of short prompts
    a, b, cap = c.sigmoid
    far = 150_000
    assert mapping_length_at(c, far) == max(1536, math.floor(cap / (1 + math.exp(-(a * far + b)))))


def test_fixed_mapping_length() -> None:
    c = LampeConfig(mapping_length=1000)
    assert {mapping_length_at(c, n) for n in (1001, 5000, 10**6)} == {1000}
    assert [mapping_length_at(c, n) for n in (1, 2, 1000)] == [0, 1, 999]  # capped at L - 1
    assert c.max_mapping_length == 1000


def test_to_params_fields() -> None:
    c = LampeConfig(window=512, start=100, sigmoid=(1e-4, -2.0, 3000.0), mapping_min=7,
                    attn_factor=1.5)
    p = c.to_params()
    assert (p.n_window, p.n_start, p.n_map, p.n_map_min) == (512, 100, 0, 7)
    assert (p.map_a, p.map_b, p.map_c, p.attn_factor) == pytest.approx((1e-4, -2.0, 3000.0, 1.5))
    assert LampeConfig(mapping_length=99).to_params().n_map == 99


def test_default_params_agree_with_c() -> None:
    c, p = LampeConfig().to_params(), _native.llama_lampe_default_params()
    for name, _ in p._fields_:
        assert getattr(c, name) == pytest.approx(getattr(p, name)), name
