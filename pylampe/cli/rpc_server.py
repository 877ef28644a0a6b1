"""``pylampe rpc-server``: a llama.cpp RPC worker that holds layers and KV cache for a client elsewhere.

It runs llama.cpp's ``rpc-server`` built from this package's patched tree, the one worker that computes the
LaMPE op (clients refuse others at the handshake).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..rpc import DEFAULT_PORT, SERVER_BINARY
from .errors import CliError
from .flags import int_at_least

EPILOG = """\
On the client: pylampe generate --rpc HOST:PORT[,HOST:PORT...] -ngl 99 ... (chat, serve, eval and bench
take --rpc too). The protocol has neither authentication nor encryption: bind to 127.0.0.1 (the default)
and reach the worker through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT worker-host), or bind to an
address of a private network you trust.

exit status: 0 stopped (Ctrl-C), 1 runtime error (address in use), 2 usage error."""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "rpc-server", help="run a worker that holds layers and KV cache for a client on another machine",
        description="Run llama.cpp's RPC worker from pylampe's build (it computes LaMPE's attention): a "
        "client's --rpc sends it layers and their KV cache, and it computes them on its CPU or GPUs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="IPv4 address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int_at_least(1, 65535), default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("-t", "--threads", type=int_at_least(1), metavar="N",
                   help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--device", metavar="DEV[,DEV...]",
                   help="devices to offer, as `pylampe info` names them (default: the GPUs, else the CPU)")
    p.add_argument("--cache", metavar="DIR",
                   help="keep the tensors a client sends in DIR/rpc, so that loading the same model again "
                   "sends only their hashes (default: no cache)")
    p.set_defaults(run=run)


def _check_address(host: str, port: int) -> None:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise CliError(f"--host {host!r} is not an IPv4 address") from None
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def run(args: argparse.Namespace) -> int:
    if not SERVER_BINARY.is_file():
        raise CliError(f"{SERVER_BINARY} is missing: reinstall pylampe")
    _check_address(args.host, args.port)
    if not ipaddress.IPv4Address(args.host).is_loopback:
        print(f"pylampe rpc-server: warning: listening on {args.host}: the RPC protocol has no authentication "
              "or encryption; use it on a private network or through an SSH tunnel only", file=sys.stderr)
    argv = [str(SERVER_BINARY), "--host", args.host, "--port", str(args.port)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.device:
        argv += ["--device", args.device]
    env = dict(os.environ)
    if args.cache:
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        env["LLAMA_CACHE"] = str(Path(args.cache).resolve())  # llama.cpp's cache directory; the worker adds rpc/
        argv.append("--cache")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # the worker takes the process over: signals and exit status are its own
