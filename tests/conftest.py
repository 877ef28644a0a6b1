"""Shared fixtures: tiny GGUF models written once per test session.

Tests that drive llama.cpp import tests/llama_driver.py, whose
import_llama_cpp() is the one place that binds llama_cpp to our library;
this file does not import it, so pure-NumPy tests run without a build.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gguf_models import write_not_gguf, write_tiny_gpt2, write_tiny_llama, write_truncated


@pytest.fixture(params=[False, True], ids=["ops", "fused"])
def lampe_path(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Flash attention off or on for every context a test makes without saying: LaMPE composed of ggml ops,
    or the fused ggml_flash_attn_ext_lampe (use with pytest.mark.usefixtures)."""
    import llama_driver

    llama_driver.FLASH_ATTN = request.param
    yield request.param
    llama_driver.FLASH_ATTN = False


@pytest.fixture(scope="session", autouse=True)
def _doc_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The document cache's default directory ($XDG_CACHE_HOME/pylampe/documents) in a temporary
    directory: the commands that tests run (chat -f, generate -f, serve) never write to the home."""
    import os

    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_llama_f32(model_dir: Path) -> Path:
    return write_tiny_llama(model_dir / "llama-f32.gguf")


@pytest.fixture(scope="session")
def tiny_llama_q8(model_dir: Path) -> Path:
    return write_tiny_llama(model_dir / "llama-q8_0.gguf", weight_type="Q8_0")


@pytest.fixture(scope="session")
def tiny_qwen2_f32(model_dir: Path) -> Path:
    return write_tiny_llama(model_dir / "qwen2-f32.gguf", arch="qwen2")


@pytest.fixture(scope="session")
def tiny_qwen2_q8(model_dir: Path) -> Path:
    return write_tiny_llama(model_dir / "qwen2-q8_0.gguf", arch="qwen2", weight_type="Q8_0")


@pytest.fixture(scope="session")
def tiny_gpt2(model_dir: Path) -> Path:
    """A model without RoPE (learned absolute positions)."""
    return write_tiny_gpt2(model_dir / "gpt2-f32.gguf")


@pytest.fixture(scope="session")
def truncated_gguf(model_dir: Path, tiny_llama_f32: Path) -> Path:
    return write_truncated(tiny_llama_f32, model_dir / "truncated.gguf")


@pytest.fixture(scope="session")
def not_gguf(model_dir: Path) -> Path:
    return write_not_gguf(model_dir / "not-a-model.gguf")




# max relative logit error of llama.cpp against the NumPy reference, per test, printed after the run
LOGIT_ERRORS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if LOGIT_ERRORS:
        terminalreporter.section("max relative logit error, llama.cpp vs the NumPy reference")
        for name, err in sorted(LOGIT_ERRORS.items()):
            terminalreporter.write_line(f"{err:9.2e}  {name}")
