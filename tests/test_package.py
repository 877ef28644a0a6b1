"""The package: our library is the one loaded, the bindings' layout, Llama's reference length."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pylampe
from pylampe import LampeConfig, LampeUnsupportedError, Llama, _native


def test_public_api() -> None:
    assert {"Llama", "LampeConfig", "__version__"} <= set(pylampe.__all__)
    assert pylampe.__version__.count(".") >= 2


def test_loaded_library_is_ours() -> None:
    lib_dir = Path(pylampe.__file__).resolve().parent / "lib"
    path = pylampe.loaded_library_path()
    assert path.is_file()
    assert path.parent == lib_dir.resolve()
    assert os.environ["LLAMA_CPP_LIB_PATH"] == str(lib_dir)


def test_build_info() -> None:
    from pylampe import _build_info

    assert len(_build_info.LLAMA_CPP_COMMIT) >= 7
    assert "cpu" in _build_info.BACKENDS
    assert all(p.endswith(".patch") for p in _build_info.PATCHES)


def test_llama_cpp_imported_first_with_another_library(tmp_path: Path) -> None:
    for lib in pylampe.LIB_DIR.iterdir():
        shutil.copy(lib, tmp_path / lib.name)
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", "import llama_cpp, pylampe"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert run.returncode != 0
    assert "ImportError: llama_cpp was imported before pylampe" in run.stderr


def test_struct_layouts_match_llama_h() -> None:
    # 5 x int32/float + ... : llama.h has no padding except the trailing bool's.
    p, s = _native.llama_lampe_params, _native.llama_lampe_state
    assert [name for name, _ in p._fields_] == [
        "n_window", "n_start", "n_map", "map_a", "map_b", "map_c", "n_map_min", "attn_factor"]
    assert ctypes.sizeof(p) == 32
    assert [name for name, _ in s._fields_] == [
        "n_ref", "n_map", "n_window", "n_start", "r", "b1", "b2", "attn_factor", "multi_grained"]
    assert s.multi_grained.offset == 32 and ctypes.sizeof(s) == 36


def test_state_init_and_map() -> None:
    params = LampeConfig(window=4, start=2, mapping_length=10).to_params()
    exact = _native.llama_lampe_state_init(params, 0)
    assert (exact.n_ref, exact.attn_factor) == (0, 1.0)
    st = _native.llama_lampe_state_init(params, 31)
    assert (st.n_ref, st.n_map, st.n_window, st.n_start, st.multi_grained) == (31, 10, 4, 2, True)
    assert [_native.llama_lampe_map(st, p) for p in (0, 3, 30, 60)] == [0, 1, 10, 20]


def _within(**kw: object) -> LampeConfig:
    # The tiny models' T is 64: W + S + M well inside it.
    return LampeConfig(window=8, start=2, mapping_length=20, n_ctx_train=64, **kw)  # type: ignore[arg-type]


def test_reference_length_follows_prompts(tiny_llama_f32: Path) -> None:
    llm = Llama(str(tiny_llama_f32), lampe=_within(within_window="lampe"), n_ctx=256, verbose=False)
    assert _native.llama_lampe_enabled(llm._ctx.ctx)
    prompt = llm.tokenize(b"the word is a pass key of the number " * 8)
    out = list(zip(range(5), llm.generate(prompt, temp=0.0)))
    assert len(out) == 5
    st = llm.lampe_state()
    # generated tokens keep L = the prompt
    assert (st["T"], st["L"], st["M"], st["W"], st["S"]) == (64, len(prompt), 20, 8, 2)
    # a direct eval is a prompt continuing the sequence
    llm.eval(prompt[:3])
    assert llm.lampe_state()["L"] == llm.n_tokens
    # a cached prefix is reused, L is still the full new prompt
    longer = prompt + prompt[:10]
    next(llm.generate(longer, temp=0.0))
    assert llm.lampe_state()["L"] == len(longer)
    llm.close()


def test_within_window_exact(tiny_llama_f32: Path) -> None:
    llm = Llama(str(tiny_llama_f32), lampe=_within(), n_ctx=256, verbose=False)
    short = llm.tokenize(b"hello world")
    next(llm.generate(short, temp=0.0))
    assert llm.lampe_state()["L"] == 0  # fits in T = 64: exact attention
    long = llm.tokenize(b"the word is a pass key of the number " * 8)
    assert len(long) > 64
    next(llm.generate(long, temp=0.0))
    assert llm.lampe_state()["L"] == len(long)
    llm.close()


def test_auto_config(tiny_llama_f32: Path) -> None:
    llm = Llama(str(tiny_llama_f32), n_ctx=128, verbose=False)
    assert llm.lampe == LampeConfig.for_model(64)
    llm.close()


def test_no_lampe(tiny_llama_f32: Path) -> None:
    llm = Llama(str(tiny_llama_f32), lampe=None, n_ctx=128, verbose=False)
    assert llm.lampe is None and not _native.llama_lampe_enabled(llm._ctx.ctx)
    llm.close()


def test_model_without_rope(tiny_gpt2: Path) -> None:
    """lampe="auto" (the default) falls back to upstream attention and says why; an explicit
    configuration refuses."""
    with pytest.raises(LampeUnsupportedError, match="RoPE"):
        Llama(str(tiny_gpt2), lampe=LampeConfig.for_model(64), n_ctx=128, verbose=False)
    llm = Llama(str(tiny_gpt2), n_ctx=128, verbose=False)
    try:
        assert llm.lampe is None and llm.lampe_off_reason == "the model does not use RoPE"
        assert llm.lampe_state()["status"] == "off: the model does not use RoPE"
        assert llm.create_completion("hello", max_tokens=2)["choices"][0]["text"] is not None
    finally:
        llm.close()
    Llama(str(tiny_gpt2), lampe=None, n_ctx=128, verbose=False).close()


def test_vocab_only_load(tiny_llama_f32: Path) -> None:
    """A tokenizer-only load, the most common llama-cpp-python call besides generating."""
    llm = Llama(str(tiny_llama_f32), vocab_only=True, verbose=False)
    try:
        assert llm.lampe is None and llm.lampe_off_reason == "a vocabulary-only load has no attention"
        assert llm.detokenize(llm.tokenize(b"the word")).strip() == b"the word"
    finally:
        llm.close()
