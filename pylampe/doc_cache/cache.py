"""A DocStore bound to one loaded model: save and restore the state of its sequence."""

from __future__ import annotations

import ctypes
from typing import Optional, Sequence

import llama_cpp

from ..cache_types import CACHE_TYPES
from ..llama import Llama
from .fingerprint import fingerprint, model_name
from .store import DocStore

# llama-cpp-python keeps its one conversation in sequence 0.
_SEQ_ID = 0
_TYPE_NAMES = {v: k for k, v in CACHE_TYPES.items()}


class DocCache:
    """Entries of ``store`` for ``llm``'s settings (computed once, at construction)."""

    def __init__(self, llm: Llama, store: DocStore):
        self.llm = llm
        self.store = store
        self.fingerprint = fingerprint(llm)

    def restore(self, tokens: Sequence[int]) -> bool:
        """Put the saved state of ``tokens`` into the model's KV cache as the whole sequence;
        False (the KV cache emptied) when there is none or llama.cpp refuses it."""
        state = self.store.get(self.fingerprint, tokens)
        if state is None:
            return False
        llm = self.llm
        llm._ctx.kv_cache_clear()
        llm.n_tokens = 0
        buffer = (ctypes.c_uint8 * len(state)).from_buffer(state)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), _SEQ_ID) == 0:
            llm._ctx.kv_cache_clear()
            self.store.warn("llama.cpp could not load the document cache entry (does the context "
                            "hold the document?); reading the document again")
            return False
        # What llama-cpp-python compares the next prompt with: the sequence holds these tokens.
        # LaMPE's L is set by the next prompt (pylampe.Llama.eval), after this load.
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return True

    def save(self, tokens: Sequence[int], name: str) -> Optional[str]:
        """Save the sequence, which must hold exactly ``tokens``; the entry's path, or None."""
        llm = self.llm
        if llm.n_tokens != len(tokens) or list(llm.input_ids[: len(tokens)]) != list(tokens):
            raise ValueError("the KV cache does not hold exactly the document's tokens")
        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, _SEQ_ID)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buffer, size, _SEQ_ID)
        cp = llm.context_params
        info = {
            "name": name, "model": model_name(llm),
            "type_k": _TYPE_NAMES.get(cp.type_k, str(cp.type_k)),
            "type_v": _TYPE_NAMES.get(cp.type_v, str(cp.type_v)),
            "lampe": llm.lampe is not None,
        }
        path = self.store.put(self.fingerprint, tokens, memoryview(buffer)[:written], info)
        return str(path) if path is not None else None
