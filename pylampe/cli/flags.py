"""Flags that several commands share: argument types, runtime, sampling and LaMPE options.

``generate``, ``chat`` and ``serve`` take the same llama.cpp runtime flags and
the same ``--lampe-*`` flags, built here once so that their spelling, help
and validation cannot drift apart.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import llama_cpp

from .. import rpc
from ..cache_types import CACHE_TYPES
from ..config import PRESETS, LampeSetting, lampe_setting
from .errors import UsageError



def int_at_least(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    return parse


def float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
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


def rpc_endpoints(text: str) -> str:
    """HOST:PORT[,HOST:PORT...], validated and normalized."""
    try:
        return ",".join(rpc.parse_endpoints(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def proportions(text: str) -> List[float]:
    """F,F,... (llama-cpp-python's server also takes them as separate words: each may hold commas)."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers F,F,..., got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers F,F,..., got {text!r}")
    return values


def sigmoid(text: str) -> Tuple[float, float, float]:
    parts = text.split(",")
    try:
        a, b, c = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers A,B,C, got {text!r}") from None
    return (a, b, c)


def add_runtime_args(group: Any, aliases: bool = False) -> None:
    """llama.cpp options shared by every command: threads, GPU layers, attention, KV cache.

    ``aliases`` adds llama-cpp-python's server spellings (``--n_threads``, ...)
    so that ``pylampe serve`` accepts the flags of ``python -m llama_cpp.server``.
    """

    def names(*own: str, server: str) -> Sequence[str]:
        return (*own, server) if aliases else own

    group.add_argument(*names("-t", "--threads", server="--n_threads"), dest="threads",
                       type=int_at_least(1), metavar="N",
                       help="CPU threads (default: llama.cpp's choice)")
    group.add_argument(*names("-ngl", "--n-gpu-layers", server="--n_gpu_layers"), dest="n_gpu_layers",
                       type=int_at_least(-1), default=0, metavar="N",
                       help="layers to offload to the GPU, -1 for all (default: 0)")
    group.add_argument(
        *names("--flash-attn", server="--flash_attn"), dest="flash_attn", choices=("on", "off"),
        default="on",
        help="flash attention; on, LaMPE runs as one fused pass over the keys on the CPU, "
        "off composes it of plain ggml ops (slower) (default: on)",
    )
    group.add_argument(*names("--cache-type-k", server="--type_k"), dest="cache_type_k",
                       choices=tuple(CACHE_TYPES), default="f16",
                       help="KV cache type for K (default: f16)")
    group.add_argument(*names("--cache-type-v", server="--type_v"), dest="cache_type_v",
                       choices=tuple(CACHE_TYPES), default="f16",
                       help="KV cache type for V; quantized types need flash attention "
                       "(default: f16)")
    group.add_argument(*names("--rpc", server="--rpc_servers"), dest="rpc_servers", type=rpc_endpoints,
                       metavar="HOST:PORT[,...]",
                       help="RPC workers (`pylampe rpc-server` on other machines): the -ngl layers and their "
                       "KV cache go to them, in proportion to their memory or --tensor-split (default: none)")
    group.add_argument(*names("--tensor-split", server="--tensor_split"), dest="tensor_split", type=proportions,
                       action="extend", nargs="+", metavar="F,F,...",
                       help="share of the offloaded layers per device, in llama.cpp's device order (RPC "
                       "workers first, then GPUs) (default: by free memory)")
    group.add_argument("--rpc-timeout", dest="rpc_timeout", type=float_in(0.0, 86400.0, low_open=True),
                       default=rpc.DEFAULT_TIMEOUT_S, metavar="S",
                       help="seconds an RPC worker may take to answer before it counts as gone (default: "
                       f"{rpc.DEFAULT_TIMEOUT_S:g}: longer than a worker's slowest batch)")


def runtime_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``llama_cpp.Llama`` keyword arguments of ``add_runtime_args``'s flags."""
    flash = args.flash_attn == "on"
    if not flash and args.cache_type_v not in ("f32", "f16"):
        raise UsageError(f"--cache-type-v {args.cache_type_v} needs flash attention: drop --flash-attn off")
    kwargs: Dict[str, Any] = dict(
        n_threads=args.threads, n_threads_batch=args.threads, n_gpu_layers=args.n_gpu_layers,
        flash_attn=flash, type_k=CACHE_TYPES[args.cache_type_k],
        type_v=CACHE_TYPES[args.cache_type_v], tensor_split=args.tensor_split,
    )
    if args.rpc_servers:
        kwargs.update(rpc_servers=args.rpc_servers, rpc_timeout=args.rpc_timeout)
    return kwargs


def add_sampling_args(parser: argparse.ArgumentParser, max_tokens_help: str) -> None:
    """-n, --temperature, --top-k, --top-p, --seed (greedy by default)."""
    s = parser.add_argument_group("sampling")
    s.add_argument("-n", "--max-tokens", type=int_at_least(1), metavar="N", help=max_tokens_help)
    s.add_argument(
        "--temperature", type=float_in(0.0, 100.0), default=0.0, metavar="T",
        help="sampling temperature; 0 is greedy decoding, reproducible and best for "
        "retrieving facts from long documents (default: 0)",
    )
    s.add_argument("--top-k", type=int_at_least(0), default=40, metavar="K",
                   help="keep the K most likely tokens, 0 for all (default: 40)")
    s.add_argument("--top-p", type=float_in(0.0, 1.0, low_open=True), default=0.95,
                   metavar="P", help="nucleus sampling mass (default: 0.95)")
    s.add_argument("--seed", type=int, default=None,
                   help="sampling seed, also picks the demo's pass key (default: random)")


def sampling_kwargs(args: argparse.Namespace, max_tokens: int) -> Dict[str, Any]:
    """``create_(chat_)completion`` keyword arguments of ``add_sampling_args``'s flags."""
    return dict(max_tokens=max_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, seed=args.seed)


def add_lampe_args(parser: argparse.ArgumentParser, method_sized_for: str) -> None:
    """The LaMPE group: --lampe/--no-lampe, --method and the --lampe-* parameters."""
    lp = parser.add_argument_group("LaMPE")
    lp.add_argument("--lampe", action=argparse.BooleanOptionalAction, default=True,
                    help="use LaMPE attention (default: on); --no-lampe for upstream attention")
    lp.add_argument("--method", metavar="METHOD",
                    help=f"a baseline instead of LaMPE, sized for {method_sized_for}: none, linear, "
                    "ntk, yarn, with optional NAME:KEY=VALUE overrides (see pylampe eval --help); "
                    "lampe is the default and takes the --lampe-* flags")
    lp.add_argument("--lampe-preset", choices=tuple(PRESETS),
                    help="the paper's parameters for a model family (default: derived from T)")
    lp.add_argument("--lampe-window", type=int_at_least(1), metavar="W",
                    help="local window W with exact relative positions")
    lp.add_argument("--lampe-start", type=int_at_least(0), metavar="S",
                    help="start (sink) span S")
    lp.add_argument("--lampe-mapping-length", type=int_at_least(1), metavar="M",
                    help="fixed mapping length M instead of the sigmoid M(L)")
    lp.add_argument("--lampe-sigmoid", type=sigmoid, metavar="A,B,C",
                    help="M(L) = max(min, floor(C / (1 + exp(-(A*L + B)))))")
    lp.add_argument("--lampe-attn-factor", type=float_in(0.0, 100.0, low_open=True),
                    metavar="s", help="attention factor s; logits scale by s^2 "
                    "(default: 1, or 0.1*ln 2 + 1 with --lampe-preset)")
    lp.add_argument("--lampe-within-window", choices=("exact", "lampe"),
                    help="prompts that fit in T: exact upstream attention, or LaMPE too "
                    "(default: exact)")


# The --lampe-* flags as LampeConfig fields (dest -> field).
LAMPE_FIELDS = {
    "lampe_window": "window",
    "lampe_start": "start",
    "lampe_mapping_length": "mapping_length",
    "lampe_sigmoid": "sigmoid",
    "lampe_attn_factor": "attn_factor",
    "lampe_within_window": "within_window",
}


def lampe_config(args: argparse.Namespace, n_ctx_train: int) -> LampeSetting:
    """What ``add_lampe_args``'s flags ask for: None with --no-lampe, "auto" when no --lampe-* flag
    is given (LaMPE where the model allows it), else the configuration."""
    if not args.lampe:
        return None
    if args.lampe_mapping_length is not None and args.lampe_sigmoid is not None:
        raise UsageError("--lampe-mapping-length and --lampe-sigmoid exclude each other")
    try:
        return lampe_setting(
            n_ctx_train, args.lampe_preset,
            **{field: getattr(args, dest) for dest, field in LAMPE_FIELDS.items()},
        )
    except ValueError as e:
        raise UsageError(str(e)) from None


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str) -> int:
    """``8G``, ``500M``, ``1.5G`` or a number of bytes (binary units, an optional trailing B/iB)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 8G or 500M, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return int(value * _SIZE_UNITS[unit])


def add_doc_cache_args(group: Any, switch: bool = True) -> None:
    """--doc-cache DIR, --doc-cache-size and (``switch``) --no-doc-cache: where documents' KV states
    are kept."""
    from ..doc_cache import DEFAULT_MAX_BYTES, default_dir

    group.add_argument("--doc-cache", metavar="DIR", dest="doc_cache",
                       help=f"keep each document's KV state here, so that the next session restores it "
                       f"instead of reading the document again (default: {default_dir()})")
    if switch:
        group.add_argument("--no-doc-cache", action="store_true",
                           help="read the document without looking in or writing to the document cache")
    group.add_argument("--doc-cache-size", type=byte_size, default=DEFAULT_MAX_BYTES, metavar="SIZE",
                       help=f"the document cache's limit; the least recently used documents go first "
                       f"(default: {DEFAULT_MAX_BYTES >> 30}G)")
