"""The ``pylampe`` command: argument parsing and the one-line error contract."""

from __future__ import annotations

import argparse
import sys
from typing import List, NoReturn, Optional

from .. import __version__
from ..rpc import RpcWorkerError
from . import bench, cache, chat, eval as eval_cmd, generate, info, rpc_server, serve
from .errors import CliError, UsageError


def _version_line() -> str:
    try:
        from .._build_info import LLAMA_CPP_COMMIT, PATCHES
    except ImportError:  # a source tree that CMake has not configured
        LLAMA_CPP_COMMIT, PATCHES = "unknown", ()
    patches = ", ".join(p.removesuffix(".patch") for p in PATCHES) or "none"
    return f"pylampe {__version__}, llama.cpp {LLAMA_CPP_COMMIT}, patches: {patches}"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (argparse prints the usage too), exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pylampe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Training-free long context for local GGUF models: LaMPE attention "
        "in llama.cpp.",
    )
    parser.add_argument("--version", action="version", version=_version_line())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    generate.add_parser(commands)
    chat.add_parser(commands)
    serve.add_parser(commands)
    eval_cmd.add_parser(commands)
    bench.add_parser(commands)
    info.add_parser(commands)
    rpc_server.add_parser(commands)
    cache.add_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CliError as e:
        sys.stdout.flush()
        print(f"pylampe: error: {e}", file=sys.stderr)
        return e.exit_code
    except RpcWorkerError as e:  # a worker that went away in the middle of a command
        sys.stdout.flush()
        print(f"\npylampe: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
