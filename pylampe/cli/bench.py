"""``pylampe bench``: prefill and decode tok/s and memory, method against plain attention."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List

from ..bench import measure, table
from ..eval import methods as methods_mod
from ..eval.records import Records
from .errors import CliError, UsageError
from .eval import _length, _list_of
from .flags import add_runtime_args, int_at_least, runtime_kwargs
from .model import check_gguf, default_model

DEFAULT_METHODS = "none,yarn,lampe"

EPILOG = """\
Each (method, length) runs in its own process: the prompt (random token
ids) is evaluated, then --n-gen tokens are generated greedily. Prefill tok/s
is prompt tokens over the time to the first generated token, decode tok/s
the generated tokens over the rest. KV and compute MiB are what llama.cpp
reports for its buffers; peak RSS is the process's. Plain attention (method
none) is measured with flash attention on and off (with the same f16 or f32
K and V cache; otherwise as --flash-attn says), and each ratio is to the faster of the two at the same length, in
the same run; --flash-attn applies to the other methods. With --repeat N
each configuration runs N times, each in its own process, the
configurations taking turns, and the table gives the median and the range.

Records go to --output as JSON Lines, appended as each is done; a rerun
with the same output skips them. Run nothing else on the machine meanwhile.

exit status: 0 success, 1 runtime error, 2 usage error."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="prefill/decode speed and memory, method against plain attention",
                              description="Speed and memory of long-context methods on one model.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", metavar="GGUF", help="GGUF model file (default: the SmolLM2 model)")
    p.add_argument("--method", action="append", metavar="METHOD",
                   help=f"methods, as for pylampe eval; self-extend is not timed (default: {DEFAULT_METHODS})")
    p.add_argument("--length", type=_list_of(_length), action="extend", metavar="N",
                   help="prompt lengths in tokens or multiples of T (default: 1T,2T,4T)")
    p.add_argument("--n-gen", type=int_at_least(1), default=32, metavar="N",
                   help="tokens generated for the decode speed (default: 32)")
    p.add_argument("-o", "--output", type=Path, default=Path("bench.jsonl"), metavar="JSONL",
                   help="records, appended and resumed (default: bench.jsonl)")
    p.add_argument("-b", "--batch-size", type=int_at_least(1), default=512, metavar="N",
                   help="tokens per llama_decode call (default: 512)")
    p.add_argument("--memory-only", action="store_true",
                   help="report the KV and compute buffers without timing: evaluate one token (the buffers "
                   "are reserved for the whole context anyway), for lengths too long to evaluate")
    p.add_argument("--repeat", type=int_at_least(1, 100), default=1, metavar="N",
                   help="runs of each configuration, each in its own process (default: 1)")
    add_runtime_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model is not None else default_model()
    check_gguf(model)
    try:
        methods = methods_mod.parse_methods(args.method or [DEFAULT_METHODS])
    except ValueError as e:
        raise UsageError(f"--method: {e}") from None
    if any(m.name == "self-extend" for m in methods):
        raise UsageError("--method: self-extend evaluates prompts its own way and is not timed by bench")
    kwargs = {"n_batch": args.batch_size, "n_ubatch": args.batch_size, **runtime_kwargs(args)}

    from .. import _native
    from ..eval.runtime import Runtime  # the model's T, to resolve lengths like 2T

    _native.set_llama_logging(False)
    try:
        runtime = Runtime(model, {})
    except ValueError as e:
        raise CliError(f"cannot use {model}: {e}") from None
    t = runtime.info.n_ctx_train
    runtime.close()
    lengths: List[int] = list(dict.fromkeys(
        round(v * t) if in_t else int(v) for v, in_t in (args.length or _list_of(_length)("1T,2T,4T"))))

    records = Records(args.output, ("model", "method", "tokens", "n_gen", "threads", "flash_attn", "type_k",
                                    "type_v", "memory_only", "run"))
    # plain attention both ways where llama.cpp can (the same unquantized K and V types): its CPU decode is
    # faster without flash attention, its prefill with
    if args.cache_type_k == args.cache_type_v and args.cache_type_v in ("f32", "f16"):
        plain_fa: tuple = (True, False)
    else:
        plain_fa = (kwargs["flash_attn"],)
    done = []
    for tokens in lengths:
        configs = [(method, flash) for method in methods
                   for flash in (plain_fa if method.name == "none" else (kwargs["flash_attn"],))]
        # the configurations take turns, run after run: a change in the machine's speed reaches all of them
        for run_no in range(args.repeat):
            for method, flash in configs:
                key = {"model": model.name, "method": method.label, "tokens": tokens, "n_gen": args.n_gen,
                       "threads": kwargs["n_threads"], "flash_attn": flash, "type_k": args.cache_type_k,
                       "type_v": args.cache_type_v, "memory_only": args.memory_only, "run": run_no}
                if key not in records:
                    try:
                        record = measure(str(model), method.label, tokens, n_gen=args.n_gen,
                                         llama_kwargs={**kwargs, "flash_attn": flash},
                                         memory_only=args.memory_only)
                        records.add({**record, "memory_only": args.memory_only, "run": run_no})
                    except RuntimeError as e:
                        raise CliError(f"{method.label} at {tokens} tokens: {e}") from None
                done.append(key)
    print(table(records.select(done)))
    return 0
