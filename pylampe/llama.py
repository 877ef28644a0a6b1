"""llama_cpp.Llama with LaMPE: the same API, plus the reference length per prompt."""

from __future__ import annotations

from typing import Any, Dict, Generator, Literal, Optional, Sequence, Union

import llama_cpp

from . import _native
from .config import LampeConfig

# llama-cpp-python keeps its one conversation in sequence 0.
_SEQ_ID = 0


class LampeUnsupportedError(ValueError):
    """The model's attention cannot use LaMPE (no RoPE, sliding windows, ...)."""


class Llama(llama_cpp.Llama):
    """A llama_cpp.Llama whose attention uses LaMPE beyond the trained context.

    The reference length L that LaMPE's position mapping depends on is the
    full prompt: ``generate()`` (and so ``create_completion`` and
    ``create_chat_completion``) sets it before the prompt is evaluated and
    generated tokens keep it; a direct ``eval()`` treats its tokens as a
    prompt continuing the sequence. The KV cache holds keys at their exact
    positions, so a cached prefix stays valid when L changes.

    Args:
        model_path: Path to a GGUF model.
        lampe: ``"auto"`` (``LampeConfig.for_model`` of the model's trained
            context), a ``LampeConfig``, or None for upstream attention.
        **kwargs: Everything ``llama_cpp.Llama`` accepts.

    Raises:
        LampeUnsupportedError: The model cannot use LaMPE (no RoPE,
            unsupported attention); a ValueError.
        ValueError: The configuration is invalid.
    """

    def __init__(
        self,
        model_path: str,
        *,
        lampe: Union[Literal["auto"], LampeConfig, None] = "auto",
        **kwargs: Any,
    ):
        if not (lampe is None or lampe == "auto" or isinstance(lampe, LampeConfig)):
            raise TypeError(f"lampe must be 'auto', a LampeConfig or None, got {lampe!r}")
        self._lampe: Optional[LampeConfig] = None
        # True while generate() runs its own evals: they must keep the prompt's L.
        self._generating = False
        super().__init__(model_path, **kwargs)
        if lampe is not None:
            try:
                self._enable(lampe)
            except Exception:
                self.close()
                raise

    def _enable(self, lampe: Union[Literal["auto"], LampeConfig]) -> None:
        reason = _native.llama_lampe_model_unsupported(self._model.model)
        if reason is not None:
            raise LampeUnsupportedError(f"LaMPE cannot be used with this model: {reason.decode()}")
        config = LampeConfig.for_model(self._model.n_ctx_train()) if lampe == "auto" else lampe
        params = config.to_params()
        if _native.llama_lampe_enable(self._ctx.ctx, params) != 0:
            message = _native.llama_lampe_params_check(params) or b"llama_lampe_enable failed"
            raise ValueError(f"invalid LaMPE parameters: {message.decode()}")
        self._lampe = config

    @property
    def lampe(self) -> Optional[LampeConfig]:
        """The configuration in use, None when attention is upstream's."""
        return self._lampe

    def _set_reference(self, n_ref: int) -> None:
        if self._lampe is None:
            return
        # "exact": prompts that fit the trained window see upstream attention.
        exact = self._lampe.within_window == "exact" and n_ref <= self._model.n_ctx_train()
        _native.llama_lampe_set_ref(self._ctx.ctx, _SEQ_ID, 0 if exact else n_ref)

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate tokens; outside ``generate()`` they are a prompt: L = n_tokens + len(tokens)."""
        if not self._generating:
            self._set_reference(self.n_tokens + len(tokens))
        super().eval(tokens)

    def generate(
        self, tokens: Sequence[int], *args: Any, reset: bool = True, **kwargs: Any
    ) -> Generator[int, Optional[Sequence[int]], None]:
        """``llama_cpp.Llama.generate`` with L = the full prompt (see the class docs)."""
        # With reset, the prompt replaces the sequence (a cached prefix is reused
        # in place); without, it extends it.
        self._set_reference(len(tokens) if reset else self.n_tokens + len(tokens))
        inner = super().generate(tokens, *args, reset=reset, **kwargs)
        # The flag is held only while the inner generator runs, so that a
        # caller's own eval() between two yielded tokens still sets L.
        sent: Optional[Sequence[int]] = None
        try:
            while True:
                self._generating = True
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                finally:
                    self._generating = False
                sent = yield token
        finally:
            inner.close()

    def lampe_state(self) -> Dict[str, Any]:
        """The LaMPE constants of the current sequence (L = 0: exact attention)."""
        st = _native.llama_lampe_get_state(self._ctx.ctx, _SEQ_ID)
        return {
            "T": self._model.n_ctx_train(),
            "L": st.n_ref,
            "M": st.n_map,
            "W": st.n_window,
            "S": st.n_start,
            "r": st.r,
            "b1": st.b1,
            "b2": st.b2,
            "s": st.attn_factor,
            "multi_grained": st.multi_grained,
        }
