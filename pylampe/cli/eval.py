"""``pylampe eval passkey|ppl``: LaMPE against the long-context baselines on one model."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from .. import _native
from ..eval import methods as methods_mod
from ..eval import passkey_eval, ppl_eval, report
from ..documents import DocumentError
from ..eval.haystack import REPEAT, Haystack, load_haystack
from ..eval.records import Records
from ..eval.runtime import Runtime
from ..llama import LampeUnsupportedError
from .errors import CliError, UsageError
from .flags import add_runtime_args, float_in, int_at_least, runtime_kwargs
from .model import check_gguf, default_model
from .progress import PrefillProgress

# A length: tokens ("4096") or a multiple of the trained context ("2T", "1.5T").
Length = Tuple[float, bool]

EPILOG = """\
methods (--method, repeatable or comma-separated; NAME[:KEY=VALUE]...):
  none         plain RoPE
  linear       position interpolation, rope_freq_scale = T/L      (factor=)
  ntk          frequency base * (L/T)^(d/(d-2))                    (factor=)
  yarn         llama.cpp YaRN, yarn_orig_ctx = T, scale = T/L     (factor=)
  self-extend  group attention, W = T/2, G = ceil((L-W)/(T-W))    (group=, window=)
  lampe        LaMPE, LampeConfig.for_model(T)                    (window=, start=, ...)
T is the model's trained context, L the length evaluated.

Records go to --output as JSON Lines, one per prompt (passkey) or length
(ppl), appended as each is done; a rerun with the same output skips them.

exit status: 0 success, 1 runtime error (model, haystack, evaluation),
2 usage error (bad flags or values)."""


def _length(text: str) -> Length:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)T|(\d+)", text.strip())
    if m is None or float(m.group(1) or m.group(2)) <= 0:
        raise argparse.ArgumentTypeError(f"expected tokens (4096) or a multiple of T (2T), got {text!r}")
    return (float(m.group(1)), True) if m.group(1) else (float(m.group(2)), False)


def _list_of(parse: Callable[[str], Any]) -> Callable[[str], List[Any]]:
    """A comma-separated list; the flag may also repeat (action="extend")."""

    def parse_list(text: str) -> List[Any]:
        return [parse(part) for part in text.split(",") if part.strip()]

    return parse_list


def _common_args(p: argparse.ArgumentParser, default_lengths: str, default_output: str) -> None:
    p.add_argument("-m", "--model", metavar="GGUF", help="GGUF model file (default: the SmolLM2 model)")
    p.add_argument("--method", action="append", metavar="METHOD",
                   help=f"methods to compare (default: all: {','.join(methods_mod.METHODS)})")
    p.add_argument("--length", type=_list_of(_length), action="extend", metavar="N",
                   help=f"lengths in tokens or multiples of T (default: {default_lengths})")
    p.add_argument("-o", "--output", type=Path, default=Path(default_output), metavar="JSONL",
                   help=f"records, appended and resumed (default: {default_output})")
    p.add_argument("--plot", type=Path, metavar="PNG", help="figure (default: OUTPUT with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no figure")
    p.add_argument("-b", "--batch-size", type=int_at_least(1), default=512, metavar="N",
                   help="tokens per llama_decode call, logits buffer rows (default: 512)")
    add_runtime_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="llama.cpp's log on stderr")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on when stderr is a terminal)")
    p.set_defaults(default_lengths=default_lengths)


def add_parser(subparsers: Any) -> None:
    ev = subparsers.add_parser("eval", help="passkey retrieval and perplexity, method against method",
                               description="Evaluate long-context methods on one model.")
    kinds = ev.add_subparsers(title="evaluations", metavar="EVAL", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    pk = kinds.add_parser("passkey", help="find a key hidden in a long haystack", epilog=EPILOG,
                          formatter_class=fmt,
                          description="Passkey retrieval: greedy exact match and the answer's "
                          "teacher-forced log-probability, by length and needle depth.")
    _common_args(pk, "1T,2T,4T", "passkey.jsonl")
    pk.add_argument("--depth", type=_list_of(float_in(0.0, 1.0)), action="extend", metavar="D",
                    help="needle depths, fractions of the haystack (default: 0.2,0.5,0.8)")
    pk.add_argument("--trials", type=int_at_least(1), default=1, metavar="N",
                    help="prompts per length and depth, each with its own key (default: 1)")
    pk.add_argument("--seed", type=int, default=0, help="the first trial's key seed (default: 0)")
    pk.add_argument("--haystack", default=REPEAT, metavar="repeat|FILE",
                    help="filler: 'repeat' (the classic sentences), a document (text, PDF, EPUB, DOCX, "
                    "HTML) or a .jsonl file of {\"input\": ...} records (default: repeat)")
    pk.add_argument("--by-depth", action="store_true",
                    help="a table row per method, length and depth (default: per method and length)")
    pk.add_argument("--n-gen", type=int_at_least(1), default=passkey_eval.DEFAULT_N_GEN, metavar="N",
                    help=f"tokens generated greedily (default: {passkey_eval.DEFAULT_N_GEN})")
    pk.set_defaults(run=run_passkey)

    pp = kinds.add_parser("ppl", help="perplexity of a long text", epilog=EPILOG, formatter_class=fmt,
                          description="Perplexity of the first N tokens of a text, overall and "
                          "per span of T positions.")
    _common_args(pp, "1T,2T,4T", "ppl.jsonl")
    pp.add_argument("--haystack", required=True, metavar="repeat|FILE",
                    help="the text: a document (text, PDF, EPUB, DOCX, HTML), a .jsonl file of "
                    "{\"input\": ...} records, or 'repeat'")
    pp.set_defaults(run=run_ppl)


def _resolve_lengths(args: argparse.Namespace, t: int) -> List[int]:
    lengths = args.length or _list_of(_length)(args.default_lengths)
    return list(dict.fromkeys(round(v * t) if in_t else int(v) for v, in_t in lengths))


def _haystack(source: str) -> Haystack:
    try:
        return load_haystack(source)
    except OSError as e:
        raise CliError(f"cannot read haystack {source}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"cannot read haystack {source}: not UTF-8 text") from None
    except DocumentError as e:  # names the file itself
        raise CliError(f"bad haystack: {e}") from None
    except ValueError as e:
        raise CliError(f"bad haystack {source}: {e}") from None


class _Session:
    """What both evaluations set up: model, methods, lengths, haystack, records, progress."""

    def __init__(self, args: argparse.Namespace, key_fields: Tuple[str, ...]):
        self.plot: Optional[Path] = None if args.no_plot else args.plot or args.output.with_suffix(".png")
        if self.plot is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise CliError("the figure needs matplotlib: pip install matplotlib, or --no-plot") from None
        model = Path(args.model) if args.model is not None else default_model()
        check_gguf(model)
        _native.set_llama_logging(args.verbose)
        self.haystack = _haystack(args.haystack)
        try:
            self.methods = methods_mod.parse_methods(args.method or list(methods_mod.METHODS))
        except ValueError as e:
            raise UsageError(f"--method: {e}") from None
        try:
            self.runtime = Runtime(model, {"n_batch": args.batch_size, **runtime_kwargs(args)})
        except ValueError as e:
            raise CliError(f"cannot use {model}: {e}") from None
        self.lengths = _resolve_lengths(args, self.runtime.info.n_ctx_train)
        for method in self.methods:  # check overrides against this model before any work
            try:
                method.setup(self.runtime.info, max(self.lengths))
            except (TypeError, ValueError) as e:
                raise UsageError(f"--method {method.label}: {e}") from None
        self.records = Records(args.output, key_fields)
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        self.progress = PrefillProgress(show)

    def run(self, evaluate: Callable[[], List[Any]]) -> List[Any]:
        try:
            return evaluate()
        except LampeUnsupportedError as e:
            raise CliError(f"{e}; leave out --method lampe") from None
        except (ValueError, RuntimeError) as e:
            raise CliError(f"evaluation failed: {e}") from None
        finally:
            self.runtime.close()
            if self.progress.show and self.progress.started is not None and self.progress.finished is None:
                sys.stderr.write("\n")


def run_passkey(args: argparse.Namespace) -> int:
    s = _Session(args, passkey_eval.KEY_FIELDS)
    depths = list(dict.fromkeys(args.depth or passkey_eval.DEFAULT_DEPTHS))

    def evaluate() -> List[Any]:
        prompts = passkey_eval.build_prompts(s.runtime, s.lengths, depths, args.trials, args.seed, s.haystack)
        return passkey_eval.run_passkey(
            s.runtime, s.methods, prompts, args.seed, s.haystack, s.records,
            on_tokens=s.progress.advance, start=s.progress.start, n_gen=args.n_gen,
        )

    records = s.run(evaluate)
    by = ("method", "length", "depth") if args.by_depth else ("method", "length")
    print(report.passkey_table(records, by))
    if s.plot is not None:
        report.passkey_heatmap(records, s.plot)
    return 0


def run_ppl(args: argparse.Namespace) -> int:
    s = _Session(args, ppl_eval.KEY_FIELDS)
    records = s.run(lambda: ppl_eval.run_ppl(
        s.runtime, s.methods, s.lengths, s.haystack, s.records,
        on_tokens=s.progress.advance, start=s.progress.start,
    ))
    print(report.ppl_table(records))
    if s.plot is not None:
        report.ppl_plot(records, s.plot)
    return 0
