"""llama_cpp.Llama with LaMPE: the same API, plus the reference length per prompt."""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Dict, Generator, Literal, Optional, Sequence, Union

import llama_cpp

from . import _native, rpc
from .config import LampeConfig, LampeSetting

# llama-cpp-python keeps its one conversation in sequence 0.
_SEQ_ID = 0

_LOG = logging.getLogger("pylampe")


class LampeUnsupportedError(ValueError):
    """The model's attention cannot use LaMPE (no RoPE, sliding windows, ...)."""


class Llama(llama_cpp.Llama):
    """A llama_cpp.Llama whose attention uses LaMPE beyond the trained context.

    The reference length L that LaMPE's position mapping depends on is the
    full prompt: ``generate()`` (and so ``create_completion`` and
    ``create_chat_completion``) uses it for the prompt's evaluation and the
    generated tokens; a direct ``eval()`` treats its tokens as a prompt
    continuing the sequence. The KV cache holds keys at their exact
    positions, so a cached prefix stays valid when L changes (its keys keep
    the mapping they were computed with).

    Args:
        model_path: Path to a GGUF model.
        lampe: ``"auto"``: ``LampeConfig.for_model`` of the model's trained
            context where LaMPE applies, upstream attention (with a notice
            in the log, and ``lampe_off_reason`` saying why) where it does
            not: a vocabulary-only load, a model without RoPE or a trained
            context length, attention LaMPE does not cover. A
            ``LampeConfig``: LaMPE, or an error. None: upstream attention.
        rpc_servers: RPC workers, "HOST:PORT,HOST:PORT" or a sequence of
            them, started with ``pylampe rpc-server`` (llama-cpp-python's
            argument): ``n_gpu_layers`` and ``tensor_split`` decide which
            layers, with their KV cache, they hold.
        rpc_timeout: seconds a worker may take to answer before it counts
            as failed (default: GGML_RPC_TIMEOUT, else 300).
        **kwargs: Everything ``llama_cpp.Llama`` accepts.

    Raises:
        LampeUnsupportedError: An explicit ``LampeConfig`` for a model that
            cannot use LaMPE (no RoPE, unsupported attention); a ValueError.
        ValueError: The configuration is invalid.
        RpcWorkerError: An RPC worker cannot be used; later, from any
            evaluation, a worker that stopped answering.
    """

    def __init__(
        self,
        model_path: str,
        *,
        lampe: LampeSetting = "auto",
        rpc_servers: Union[None, str, Sequence[str]] = None,
        rpc_timeout: Optional[float] = None,
        **kwargs: Any,
    ):
        if not (lampe is None or lampe == "auto" or isinstance(lampe, LampeConfig)):
            raise TypeError(f"lampe must be 'auto', a LampeConfig or None, got {lampe!r}")
        self._lampe: Optional[LampeConfig] = None
        self._lampe_off_reason: Optional[str] = None if lampe is not None else "lampe=None"
        # True while generate() runs its own evals: they keep the prompt's L, _prompt_len.
        self._generating = False
        self._prompt_len = 0
        self._rpc_servers = rpc.parse_endpoints(rpc_servers) if rpc_servers else []
        if self._rpc_servers:
            rpc.connect(self._rpc_servers, rpc_timeout)
        self._devices = rpc.devices_array(self._rpc_servers)  # see model_params below
        try:
            super().__init__(model_path, **kwargs)
        except Exception:
            self._check_workers()  # a worker that failed during the load says so
            raise
        self._check_workers()
        if lampe is not None:
            try:
                self._enable(lampe)
            except Exception:
                self.close()
                raise

    def _unsupported(self) -> Optional[str]:
        """Why LaMPE cannot run on this load, or None."""
        if self.model_params.vocab_only:
            return "a vocabulary-only load has no attention"
        reason = _native.llama_lampe_model_unsupported(self._model.model)
        if reason is not None:
            return reason.decode()
        if self._model.n_ctx_train() <= 0:
            return "the model does not say its trained context length"
        return None

    def _enable(self, lampe: Union[Literal["auto"], LampeConfig]) -> None:
        reason = self._unsupported()
        if reason is not None and lampe == "auto":
            self._auto_off(reason)
            return
        if reason is not None:
            raise LampeUnsupportedError(f"LaMPE cannot be used with this model: {reason}")
        model = self._model.model
        if lampe == "auto":
            try:
                config = LampeConfig.for_model(self._model.n_ctx_train())
            except ValueError as e:  # a trained context too short for any LaMPE setting
                self._auto_off(str(e))
                return
        else:
            config = lampe
        params = config.to_params()
        rc = _native.llama_lampe_enable(self._ctx.ctx, params)
        if rc == -3:
            if lampe == "auto":
                self._auto_off("the context's attention is not causal")
                return
            raise LampeUnsupportedError("LaMPE needs causal attention (this context is not causal)")
        if rc != 0:
            message = _native.llama_lampe_params_check(model, params) or b"llama_lampe_enable failed"
            raise ValueError(f"invalid LaMPE parameters: {message.decode()}")
        self._lampe = config

    def _auto_off(self, reason: str) -> None:
        """lampe="auto" where LaMPE does not apply: upstream attention, said once (a tokenizer-only
        load is obvious and stays quiet)."""
        self._lampe_off_reason = reason
        if not self.model_params.vocab_only:
            _LOG.warning("pylampe: LaMPE off for %s: %s; upstream attention", self.model_path, reason)

    @property
    def lampe(self) -> Optional[LampeConfig]:
        """The configuration in use, None when attention is upstream's."""
        return self._lampe

    @property
    def lampe_off_reason(self) -> Optional[str]:
        """Why attention is upstream's ("lampe=None", or what ``"auto"`` found), None with LaMPE on."""
        return self._lampe_off_reason

    def _set_reference(self, n_ref: int) -> None:
        if self._lampe is None:
            return
        # "exact": prompts that fit the trained window see upstream attention.
        exact = self._lampe.within_window == "exact" and n_ref <= self._model.n_ctx_train()
        if _native.llama_lampe_set_ref(self._ctx.ctx, _SEQ_ID, 0 if exact else n_ref) != 0:
            raise ValueError(
                f"cannot set the LaMPE reference length to {n_ref} tokens: it must be in "
                f"[0, {self.n_ctx()}], the context size"
            )

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate tokens; outside ``generate()`` they are a prompt: L = n_tokens + len(tokens)."""
        # llama_cpp.Llama.eval first drops the cells past n_tokens; drop them here, so that the L set
        # below describes the sequence as this eval finds it.
        self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
        # Inside generate() the prompt's L holds, also for tokens re-evaluated after a rollback.
        self._set_reference(self._prompt_len if self._generating else self.n_tokens + len(tokens))
        try:
            super().eval(tokens)
        finally:
            self._check_workers()  # the logits of a failed worker's layers are not the model's

    @property
    def model_params(self) -> llama_cpp.llama_model_params:
        return self._model_params

    @model_params.setter
    def model_params(self, params: llama_cpp.llama_model_params) -> None:
        # llama_cpp.Llama.__init__ assigns its params once before loading: the devices go in there (it has no
        # argument for them), so that the model uses this instance's RPC workers and no others
        if getattr(self, "_devices", None) is not None:
            params.devices = ctypes.cast(self._devices, ctypes.c_void_p)
        self._model_params = params

    def close(self) -> None:
        if hasattr(self, "_stack"):  # not when __init__ failed before llama_cpp.Llama's (an RPC worker, say)
            super().close()

    def _check_workers(self) -> None:
        if self._rpc_servers:
            rpc.check(self._rpc_servers)

    def generate(
        self, tokens: Sequence[int], *args: Any, reset: bool = True, **kwargs: Any
    ) -> Generator[int, Optional[Sequence[int]], None]:
        """``llama_cpp.Llama.generate`` with L = the full prompt (see the class docs)."""
        # With reset, the prompt replaces the sequence (a cached prefix is reused
        # in place); without, it extends it.
        self._prompt_len = len(tokens) if reset else self.n_tokens + len(tokens)
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

    def lampe_counters(self) -> Dict[str, int]:
        """What llama_decode did with LaMPE on this context: ubatches with and without it, and
        ``exact_beyond_T``, ubatches with a token beyond T and no L (llama.cpp keeps it at 0)."""
        c = _native.llama_lampe_get_counters(self._ctx.ctx)
        return {
            "lampe": c.n_ubatch_lampe,
            "exact": c.n_ubatch_exact,
            "exact_beyond_T": c.n_ubatch_exact_beyond,
            "L_derived": c.n_ref_derived,
            "L_kept": c.n_ref_kept,
            "L_reset": c.n_ref_reset,
        }

    def lampe_state(self) -> Dict[str, Any]:
        """The LaMPE constants of the current sequence (L = 0: exact attention), and ``status``:
        "on", or "off: <reason>"."""
        st = _native.llama_lampe_get_state(self._ctx.ctx, _SEQ_ID)
        return {
            "status": "on" if self._lampe is not None else f"off: {self._lampe_off_reason}",
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
