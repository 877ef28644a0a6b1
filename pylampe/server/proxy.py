"""The seam: llama-cpp-python's model loader, building ``pylampe`` models.

``llama_cpp.server.model.LlamaProxy.load_llama_from_model_settings`` turns a
ModelSettings into a model (chat handlers, tokenizer, draft model, KV
overrides, prompt cache, ...) and calls ``llama_cpp.Llama(...)`` for it.
``LampeProxy`` runs that same function, unchanged, with one name rebound in
its globals: ``llama_cpp`` is a view of the llama_cpp module whose ``Llama``
is a MeteredLlama (a ``pylampe.Llama``) carrying the model's LaMPE setting.
Nothing in llama_cpp is modified: the rebinding lives in a copy of the
function's globals. ``_loader`` checks that the function still refers to
``llama_cpp.Llama``, so a llama-cpp-python that changes it fails loudly.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Dict, List, Optional

import llama_cpp
from llama_cpp.server.model import LlamaProxy
from llama_cpp.server.settings import ModelSettings

from ..config import LampeSetting
from ..eval.model_info import ModelInfo
from ..metered import MeteredLlama
from .settings import LampeModelSettings, resolve

_UPSTREAM_LOADER: Callable[[ModelSettings], llama_cpp.Llama] = LlamaProxy.load_llama_from_model_settings


class _LlamaCppView(types.ModuleType):
    """``llama_cpp`` with another ``Llama``; every other name is llama_cpp's."""

    def __init__(self, llama_class: type):
        super().__init__("llama_cpp")
        self.Llama = llama_class

    def __getattr__(self, name: str) -> Any:
        return getattr(llama_cpp, name)


def _loader(llama_class: type) -> Callable[[ModelSettings], llama_cpp.Llama]:
    """llama-cpp-python's loader, building ``llama_class`` where it builds llama_cpp.Llama."""
    code = _UPSTREAM_LOADER.__code__
    if "llama_cpp" not in code.co_names or "Llama" not in code.co_names:
        raise RuntimeError(
            "llama_cpp.server.model.LlamaProxy.load_llama_from_model_settings no longer builds "
            "llama_cpp.Llama: pylampe's server seam needs updating for this llama-cpp-python"
        )
    globals_ = dict(_UPSTREAM_LOADER.__globals__, llama_cpp=_LlamaCppView(llama_class))
    return types.FunctionType(code, globals_, code.co_name, _UPSTREAM_LOADER.__defaults__,
                              _UPSTREAM_LOADER.__closure__)


def served_class(lampe: LampeSetting) -> type:
    """A MeteredLlama class whose models use ``lampe`` (see pylampe.Llama)."""

    class ServedLlama(MeteredLlama):
        def __init__(self, model_path: str, **kwargs: Any):
            super().__init__(model_path, lampe=lampe, **kwargs)

    return ServedLlama


def model_info(path: str) -> ModelInfo:
    """T and the RoPE parameters from the GGUF metadata (the vocabulary only is loaded).

    Raises:
        ValueError: the file cannot be loaded or has no trained context length.
    """
    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    try:
        return ModelInfo.from_metadata(vocab.metadata)
    finally:
        vocab.close()


def load_model(settings: ModelSettings) -> MeteredLlama:
    """The model for one alias: n_ctx, LaMPE or a baseline resolved, then llama-cpp-python's
    loader with everything else it supports."""
    if not isinstance(settings, LampeModelSettings):
        settings = LampeModelSettings.model_validate(settings.model_dump())
    resolved, lampe = resolve(settings, model_info(settings.model))
    return _loader(served_class(lampe))(resolved)  # type: ignore[return-value]


class LampeProxy(LlamaProxy):
    """llama-cpp-python's LlamaProxy (one model loaded at a time, swapped by alias) that loads
    ``pylampe`` models; it also knows which alias is loaded."""

    def __init__(self, models: List[LampeModelSettings]) -> None:
        for m in models:
            m.model_alias = m.alias
        super().__init__(models=list(models))  # type: ignore[arg-type]

    load_llama_from_model_settings = staticmethod(load_model)  # type: ignore[assignment]

    @property
    def current_alias(self) -> Optional[str]:
        return self._current_model_alias

    @property
    def current(self) -> Optional[MeteredLlama]:
        return self._current_model  # type: ignore[return-value]

    def drop(self) -> None:
        """Close the loaded model (an RPC worker it used went away): the next request loads it again."""
        if self._current_model is not None:
            self._current_model.close()
        self._current_model = None

    def settings(self) -> Dict[str, LampeModelSettings]:
        return dict(self._model_settings_dict)  # type: ignore[arg-type]
