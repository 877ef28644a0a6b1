"""Laid over llama-cpp-python's own tests (the pinned sdist's tests/) by tests/test_upstream_suite.py.

Runs them against pylampe, offline, in the mode PYLAMPE_UPSTREAM_MODE names:

- ``upstream``: ``llama_cpp.Llama`` as it is, on pylampe's patched library;
- ``auto``: ``llama_cpp.Llama`` replaced by ``pylampe.Llama`` with its default, ``lampe="auto"``;
- ``forced``: ``pylampe.Llama`` with LaMPE on every prompt, however short (W = 2, S = 1, within the
  trained window too), so that its three regions are engaged on the tests' short prompts.

``huggingface_hub.hf_hub_download`` is replaced: the transformer fixture (a 15M-parameter Llama) maps to
the embedded SmolLM2 (a Llama too); every other download skips its test with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from typing import Any, Callable, Dict, Tuple

import pytest

import pylampe  # first: llama_cpp loads pylampe's library
import llama_cpp
from pylampe.cli.model import default_model

MODE = os.environ.get("PYLAMPE_UPSTREAM_MODE", "upstream")

LOCAL: Dict[Tuple[str, str], Callable[[], Any]] = {
    ("ggml-org/models", "tinyllamas/stories15M-q4_0.gguf"): default_model,
}


def hf_hub_download(repo_id: str, filename: str, **kwargs: Any) -> str:
    local = LOCAL.get((repo_id, filename))
    if local is None:
        pytest.skip(f"{repo_id}/{filename}: a download, and no local model stands in for it offline")
    return str(local())


_hub = types.ModuleType("huggingface_hub")
_hub.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
sys.modules["huggingface_hub"] = _hub


# ubatches decoded with LaMPE by ForcedLlama models, reported at the end of the run
LAMPE_UBATCHES = [0]


class ForcedLlama(pylampe.Llama):
    """LaMPE on every prompt of a model that has RoPE: W = 2, S = 1, also within the trained window."""

    def close(self) -> None:
        if self.lampe is not None and getattr(self, "_ctx", None) is not None and self._ctx.ctx is not None:
            LAMPE_UBATCHES[0] += self.lampe_counters()["lampe"]
        super().close()

    def __init__(self, model_path: str, **kwargs: Any):
        kwargs.pop("lampe", None)
        super().__init__(model_path, lampe=None, **kwargs)
        if self._unsupported() is None:
            base = pylampe.LampeConfig.for_model(self._model.n_ctx_train())
            self._enable(dataclasses.replace(base, window=2, start=1, within_window="lampe"))
            assert self.lampe is not None


if MODE == "auto":
    llama_cpp.Llama = pylampe.Llama  # type: ignore[misc]
elif MODE == "forced":
    llama_cpp.Llama = ForcedLlama  # type: ignore[misc]
elif MODE != "upstream":
    raise RuntimeError(f"PYLAMPE_UPSTREAM_MODE must be upstream, auto or forced, got {MODE!r}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MODE == "forced":
        terminalreporter.write_line(f"pylampe: {LAMPE_UBATCHES[0]} ubatches decoded with LaMPE")
