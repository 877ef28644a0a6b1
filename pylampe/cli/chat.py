"""``pylampe chat``: a terminal conversation about a long document.

The document is read (evaluated) once, before the first question; then each
turn evaluates only its own new tokens (see pylampe.conversation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

import llama_cpp

from .. import _native
from ..conversation import Conversation, opening_tokens
from ..doc_cache import DocCache, read_once
from ..metered import ContextOverflowError, MeteredLlama, TurnStats
from .document import doc_store, kv_type_label, read_file, read_line, what_was_read
from .errors import CliError
from .flags import (
    add_doc_cache_args, add_lampe_args, add_runtime_args, add_sampling_args, int_at_least, runtime_kwargs,
    sampling_kwargs,
)
from .generate import CTX_ROUNDING, add_model_arg, add_output_args
from .model import Vocab, check_memory, load, method_kwargs, model_path, print_state, round_up
from .progress import PrefillProgress

DEFAULT_MAX_TOKENS = 512
# Room for the conversation after the document, in the default context size.
DEFAULT_ROOM = 4096
# Prefills shorter than this (most turns) get no progress bar.
PROGRESS_MIN_TOKENS = 1024

COMMANDS = """\
/help   these commands
/reset  forget the questions and answers, keep the document
/stats  the last turn's tokens and speed, the context used, LaMPE's state
/exit   leave (also /quit, or Ctrl-D)"""

EPILOG = f"""\
The document (-f FILE: PDF, EPUB, DOCX, HTML, Markdown or UTF-8 text) goes
into the first user message, before the first question, formatted with the
model's chat template. It is read once, at the start; after that each turn
evaluates only its own new tokens, because the KV cache keeps the
conversation so far (with LaMPE, each turn recomputes the position mapping
for the new length without re-reading the document). The document's KV
state is saved in the document cache, and the next session on the same
document, model and settings restores it in seconds instead of reading it
(pylampe cache list|clear).

On a terminal: type a question and Enter; Ctrl-C stops the answer being
written (the session goes on), Ctrl-D or /exit leaves. With stdin not a
terminal, each non-empty line is one question (or command) and each answer
is printed as one paragraph followed by a newline.

commands:
{COMMANDS}

exit status: 0 success, 1 runtime error (model, context full with stdin not
a terminal), 2 usage error."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "chat",
        help="chat about a long document in the terminal",
        description="Chat about a long document: the document is read once, then each "
        "question costs only its own tokens.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)
    io = p.add_argument_group("input")
    add_model_arg(io)
    io.add_argument("-f", "--file", metavar="FILE",
                    help="the document to talk about: PDF, EPUB, DOCX, HTML, Markdown or UTF-8 text "
                    "(default: none, a plain chat)")
    io.add_argument("--system", metavar="TEXT",
                    help="a system message before the document (default: none; the chat "
                    "template may add its own)")
    add_sampling_args(p, f"tokens per answer at most (default: {DEFAULT_MAX_TOKENS})")
    r = p.add_argument_group("runtime")
    r.add_argument(
        "-c", "--ctx-size", type=int_at_least(1), metavar="N",
        help=f"context size in tokens, for the document and the whole conversation "
        f"(default: the document + {DEFAULT_ROOM}, rounded up to a multiple of {CTX_ROUNDING})",
    )
    add_runtime_args(r)
    add_doc_cache_args(r)
    add_lampe_args(p, "the context size")
    add_output_args(p, stats="after each answer, print to stderr the prompt tokens reused from "
                    "the cache and evaluated, the time to first token and the decode speed")


def stats_line(turn: TurnStats, label: str) -> str:
    return (
        f"stats: {label}: prompt {turn.prompt_tokens} tokens ({turn.reused_tokens} reused, "
        f"{turn.prefill_tokens} evaluated), TTFT {turn.ttft_s:.2f} s, prefill "
        f"{turn.prefill_rate:.1f} tok/s, decode {turn.decode_rate:.1f} tok/s"
    )


class _Session:
    """The prompt loop: questions from a terminal or from lines of stdin."""

    def __init__(self, args: argparse.Namespace, chat: Conversation, progress: PrefillProgress, sampling: dict,
                 interactive: bool):
        self.args = args
        self.chat = chat
        self.progress = progress
        self.sampling = sampling
        self.interactive = interactive
        self.out: TextIO = sys.stdout

    def lines(self) -> Iterator[str]:
        if not self.interactive:
            yield from (line.strip() for line in sys.stdin)
            return
        while True:
            try:
                yield input("> ").strip()
            except KeyboardInterrupt:  # clears the line, like a shell
                print(file=sys.stderr)
            except EOFError:
                print(file=sys.stderr)
                return

    def run(self) -> None:
        for line in self.lines():
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
                continue
            self.turn(line)

    def command(self, line: str) -> bool:
        """Run a /command; False to leave."""
        name = line.split()[0].lower()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            print(COMMANDS, file=sys.stderr)
        elif name == "/reset":
            self.chat.reset()
            print("conversation reset: the document stays read", file=sys.stderr)
        elif name == "/stats":
            llm = self.chat.llm
            if llm.last_turn is not None:
                print(stats_line(llm.last_turn, f"turn {self.chat.turns}"), file=sys.stderr)
            print(f"context: {llm.n_tokens} of {llm.n_ctx()} tokens in the KV cache, "
                  f"{self.chat.turns} turns", file=sys.stderr)
            print_state(llm)
        else:
            print(f"unknown command {name}; the commands are:\n{COMMANDS}", file=sys.stderr)
        return True

    def turn(self, question: str) -> None:
        llm = self.chat.llm
        before = llm.last_turn
        answer = self.chat.ask(question, **self.sampling)
        try:
            for i, piece in enumerate(answer):
                if i == 0 and self.args.verbose:
                    print_state(llm)
                self.out.write(piece)
                self.out.flush()
        except ContextOverflowError as e:
            message = f"{e}: /reset, lower -n or restart with a larger -c"
            if not self.interactive:
                raise CliError(message) from None
            print(f"pylampe: error: {message}", file=sys.stderr)
            return
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            answer.close()  # keeps what was written as the answer
            self.progress.end()
            self.out.write("\n")
            print("[stopped]", file=sys.stderr)
            return
        except (ValueError, RuntimeError) as e:
            raise CliError(f"evaluation failed: {e}") from None
        finally:
            answer.close()
        self.out.write("\n")
        self.out.flush()
        if self.args.stats and llm.last_turn is not None and llm.last_turn is not before:
            print(stats_line(llm.last_turn, f"turn {self.chat.turns}"), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    model = model_path(args)
    doc = read_file(args.file) if args.file is not None else None
    document = doc.text if doc is not None else None
    interactive = sys.stdin.isatty()
    _native.set_llama_logging(args.verbose)

    vocab = Vocab(model, args.verbose)
    if vocab.chat_template is None:
        raise CliError("the model has no chat template: pylampe chat needs one")
    max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    opening = opening_tokens(vocab.llm, document, args.system)
    n_ctx = args.ctx_size or round_up(len(opening) + DEFAULT_ROOM, CTX_ROUNDING)
    if len(opening) + max_tokens > n_ctx:
        raise CliError(
            f"the document ({len(opening)} tokens) plus {max_tokens} tokens to generate does not "
            f"fit the context of {n_ctx} tokens: raise -c or lower -n"
        )
    memory = check_memory(args, vocab, n_ctx)
    kwargs = method_kwargs(args, vocab, n_ctx)
    vocab.close()
    llm: MeteredLlama = load(
        MeteredLlama, model, n_ctx=n_ctx, **kwargs, **runtime_kwargs(args),
        seed=args.seed if args.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
        chat_format="chat_template.default", verbose=args.verbose,
    )
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    llm.progress = progress = PrefillProgress(show, min_total=PROGRESS_MIN_TOKENS)
    chat = Conversation(llm, document, args.system)
    try:
        if doc is not None:
            if interactive or show or args.stats:
                print(what_was_read(args.file, doc, len(opening), vocab.n_ctx_train, n_ctx, memory.kv,
                                    kv_type_label(args)), file=sys.stderr)
            store = doc_store(args)
            read = read_once(llm, chat.prefix_tokens(), DocCache(llm, store) if store else None,
                             Path(args.file).name)
            if args.stats or interactive:
                print(f"{'stats: ' if args.stats else ''}{read_line(read)}", file=sys.stderr)
        if interactive:
            import readline  # noqa: F401  (line editing and history for input())

            print(f"context {n_ctx} tokens, {'LaMPE' if llm.lampe else 'upstream attention'}; "
                  "ask a question, /help for commands, Ctrl-D to leave", file=sys.stderr)
        _Session(args, chat, progress, sampling_kwargs(args, max_tokens), interactive).run()
    finally:
        progress.end()
        llm.close()
    return 0
