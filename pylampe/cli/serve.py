"""``pylampe serve``: an OpenAI-compatible HTTP server (llama-cpp-python's) with LaMPE models."""

from __future__ import annotations

import argparse
import os
import errno
import json
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

from .. import _native
from .errors import CliError, UsageError
from ..cache_types import CACHE_TYPES
from .flags import LAMPE_FIELDS, add_doc_cache_args, add_lampe_args, add_runtime_args, int_at_least
from .generate import add_model_arg
from .model import Vocab, check_context, check_gguf, default_model, load

EPILOG = """\
The chat page: open http://HOST:PORT/ in a browser, drop a document (PDF,
EPUB, DOCX, HTML, Markdown or text: read as -f reads it) and ask questions;
--no-webui serves the API only.

Endpoints: POST /v1/chat/completions, POST /v1/completions (both stream with
"stream": true), GET /v1/models, and llama-cpp-python's /v1/embeddings and
/extras/tokenize, /extras/detokenize; GET /extras/lampe shows LaMPE's state
and the last request's reused and evaluated prompt tokens. Interactive API
docs at /docs.

Requests are answered one at a time, in arrival order; a conversation that
resends its history evaluates only what is new since the previous request
(the KV cache keeps the longest common prefix), and LaMPE recomputes its
position mapping for the new length. A prompt plus max_tokens longer than
the context is refused with HTTP 400 (code context_length_exceeded), never
truncated.

Each flag also has llama-cpp-python's spelling (--n_ctx, --n_threads, ...),
and every other setting of `python -m llama_cpp.server` is accepted as it
is spelled there (see the last group). --config-file takes that server's
config file (JSON or YAML: server settings and a list of "models"), whose
models may add the fields lampe (true/false), method, lampe_preset,
lampe_window, lampe_start, lampe_mapping_length, lampe_sigmoid ([A, B, C]),
lampe_attn_factor and lampe_within_window; one file can serve a LaMPE model
and a plain one under two aliases (one is loaded at a time; a request
naming the other swaps them).

exit status: 0 stopped (Ctrl-C), 1 runtime error (model, address in use),
2 usage error (bad flags, config file or LaMPE settings)."""

# Settings that pylampe's own flags set; every other field keeps llama-cpp-python's flag.
_OWN_FIELDS = {
    "model", "model_alias", "chat_format", "n_ctx", "n_threads", "n_threads_batch", "n_gpu_layers",
    "flash_attn", "type_k", "type_v", "verbose", "host", "port", "api_key", "lampe", "method",
    "lampe_preset", "rpc_servers", "tensor_split", *LAMPE_FIELDS,
}
# llama.cpp's K/V type ids by the names the flags use (None, llama.cpp's default: f16).
_TYPE_NAMES = {v: k for k, v in CACHE_TYPES.items()}
_SERVER_FLAGS = {"host", "port", "api_key", "verbose", "config_file", "doc_cache", "doc_cache_size", "no_doc_cache",
                 "no_webui", "upload_limit_mb"}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="an OpenAI-compatible server for chats about long documents",
        description="Serve a model over the OpenAI API (llama-cpp-python's server) with "
        "LaMPE attention: prompts beyond the trained context work without flags, and each "
        "turn of a conversation evaluates only its new tokens.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)
    m = p.add_argument_group("model")
    add_model_arg(m)
    m.add_argument("--model-alias", "--model_alias", dest="model_alias", metavar="NAME",
                   help="the model's name in the API (default: the file name without .gguf)")
    m.add_argument("--chat-format", "--chat_format", dest="chat_format", metavar="NAME",
                   help="llama-cpp-python chat format (default: the model's own chat template)")
    r = p.add_argument_group("runtime")
    r.add_argument("-c", "--ctx-size", "--n_ctx", dest="ctx_size", type=int_at_least(1), metavar="N",
                   help="context size in tokens, shared by a conversation's turns (default: 4 x the "
                   "trained context T with LaMPE or --method, T without; at most 32768)")
    add_runtime_args(r, aliases=True)
    add_lampe_args(p, "the context size")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="listen address (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int_at_least(0, 65535), default=8000, help="listen port (default: 8000)")
    s.add_argument("--api-key", "--api_key", dest="api_key", metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every request (default: none)")
    s.add_argument("--config-file", "--config_file", dest="config_file", metavar="FILE",
                   help="llama-cpp-python's config file (JSON or YAML) with server settings and "
                   "models; model flags are then not allowed")
    add_doc_cache_args(s)
    s.add_argument("--no-webui", "--no_webui", dest="no_webui", action="store_true", default=None,
                   help="serve no chat page at / (the API only)")
    s.add_argument("--upload-limit-mb", "--upload_limit_mb", dest="upload_limit_mb", type=int_at_least(1),
                   metavar="MIB", help="the largest document file the chat page accepts (default: 100)")
    s.add_argument("-v", "--verbose", action="store_true",
                   help="llama.cpp's log and llama-cpp-python's timings on stderr")
    _add_upstream_args(p.add_argument_group(
        "llama-cpp-python server settings (spelled as in python -m llama_cpp.server)"))


def _add_upstream_args(group: Any) -> None:
    """Every ModelSettings/ServerSettings field that pylampe's flags do not cover, as
    llama_cpp.server.cli.add_args_from_model spells and parses it."""
    from llama_cpp.server.cli import (
        _contains_dict_type, _contains_list_type, _get_base_type, _parse_bool_arg, _parse_json_object_arg,
    )
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    fields = {**ModelSettings.model_fields, **ServerSettings.model_fields}
    for name, field in fields.items():
        if name in _OWN_FIELDS:
            continue
        help_ = field.description or ""
        if field.default is not None and not field.is_required():
            help_ += f" (default: {field.default})"
        base = _get_base_type(field.annotation) if field.annotation is not None else str
        if _contains_dict_type(field.annotation):
            kind: Dict[str, Any] = {"type": _parse_json_object_arg}
        elif base is bool:
            kind = {"type": _parse_bool_arg, "metavar": "BOOL"}
        else:
            kind = {"type": base, "metavar": name.upper(),
                    "nargs": "*" if _contains_list_type(field.annotation) else None}
        group.add_argument(f"--{name}", dest=f"upstream_{name}", help=help_ or name, **kind)


def _explicit(args: argparse.Namespace, parser_defaults: Dict[str, Any]) -> Set[str]:
    return {k for k, v in vars(args).items() if k != "run" and v is not None and v != parser_defaults.get(k)}


def _model_fields(args: argparse.Namespace) -> Dict[str, Any]:
    model = str(Path(args.model) if args.model is not None else default_model())
    fields: Dict[str, Any] = {
        "model": model, "model_alias": args.model_alias, "chat_format": args.chat_format,
        "n_ctx": args.ctx_size, "n_threads": args.threads, "n_threads_batch": args.threads,
        "n_gpu_layers": args.n_gpu_layers, "flash_attn": args.flash_attn == "on",
        "type_k": CACHE_TYPES[args.cache_type_k], "type_v": CACHE_TYPES[args.cache_type_v],
        "verbose": args.verbose, "lampe": args.lampe, "method": args.method,
        "rpc_servers": args.rpc_servers, "tensor_split": args.tensor_split,
        "lampe_preset": args.lampe_preset,
        **{dest: getattr(args, dest) for dest in LAMPE_FIELDS},
    }
    return {k: v for k, v in fields.items() if v is not None}


def _upstream_fields(args: argparse.Namespace) -> Dict[str, Any]:
    prefix = "upstream_"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def _validation_message(e: Any) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def _read_config_file(path: str) -> Dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read the config file {path}: {e.strerror}") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        raise UsageError(f"the config file {path} is not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'}: "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"the config file {path} must hold an object with server settings and 'models'")
    return data


def settings_from_args(args: argparse.Namespace, parser_defaults: Dict[str, Any]) -> Tuple[Any, List[Any]]:
    """(LampeServerSettings, [LampeModelSettings]) from the flags or the config file."""
    from pydantic import ValidationError

    from ..server.settings import LampeConfigFileSettings, LampeModelSettings, LampeServerSettings
    from llama_cpp.server.settings import ModelSettings

    server_flags = {k: getattr(args, k) for k in ("host", "port", "api_key", "doc_cache", "doc_cache_size",
                                                  "no_doc_cache", "no_webui", "upload_limit_mb")
                    if getattr(args, k) is not None}
    upstream = _upstream_fields(args)
    try:
        if args.config_file is None:
            model_upstream = {k: v for k, v in upstream.items() if k in ModelSettings.model_fields}
            server_upstream = {k: v for k, v in upstream.items() if k not in model_upstream}
            server = LampeServerSettings(**server_upstream, **server_flags)
            return server, [LampeModelSettings(**model_upstream, **_model_fields(args))]
        model_flags = sorted(_explicit(args, parser_defaults) - _SERVER_FLAGS)
        if model_flags:
            raise UsageError(f"--config-file holds the models and server settings: drop "
                             f"{', '.join('--' + f.removeprefix('upstream_') for f in model_flags)}")
        data = _read_config_file(args.config_file)
        data.update({k: v for k, v in server_flags.items() if k in _explicit(args, parser_defaults)})
        config = LampeConfigFileSettings.model_validate(data)
        if not config.models:
            raise UsageError(f"the config file {args.config_file} lists no models")
        if args.verbose:
            for m in config.models:
                m.verbose = True
        server = LampeServerSettings.model_validate(config.model_dump(exclude={"models"}))
        return server, list(config.models)
    except ValidationError as e:
        source = f"the config file {args.config_file}" if args.config_file else "settings"
        raise UsageError(f"{source}: {_validation_message(e)}") from None
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_models(models: List[Any]) -> List[str]:
    """Each model's file, metadata and LaMPE settings, before anything is loaded; one line each."""
    from ..server.settings import resolve

    lines, aliases = [], set()
    for m in models:
        alias = m.alias
        if alias in aliases:
            raise UsageError(f"two models are named {alias!r}: give each a model_alias")
        aliases.add(alias)
        check_gguf(Path(m.model))
        try:
            vocab = Vocab(Path(m.model), False)
            info = vocab.model_info()
        except CliError as e:
            raise CliError(f"model {alias}: {e}") from None
        try:
            resolved, lampe = resolve(m, info)
            # before the server binds its port: a context this machine cannot hold is one line
            check_context(vocab, resolved.n_ctx, _TYPE_NAMES.get(resolved.type_k, "f16"),
                          _TYPE_NAMES.get(resolved.type_v, "f16"), resolved.flash_attn, resolved.n_gpu_layers)
        except ValueError as e:
            raise UsageError(f"model {alias}: {e}") from None
        except CliError as e:
            raise CliError(f"model {alias}: {e}") from None
        finally:
            vocab.close()
        if lampe == "auto":
            attention = "LaMPE where the model allows it"
        elif lampe is not None:
            attention = f"LaMPE W={lampe.window} S={lampe.start}"
        elif m.method not in (None, "lampe"):
            attention = f"method {m.method}"
        else:
            attention = "upstream attention"
        lines.append(f"  {alias}: {Path(m.model).name}, n_ctx {resolved.n_ctx}, T {info.n_ctx_train}, {attention}")
    return lines


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            reason = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise CliError(f"cannot listen on {host}:{port}: {reason}") from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as e:
        raise CliError(f"pylampe serve needs the server packages ({e.name} is missing): "
                       "pip install 'pylampe[server]'") from None
    from . import build_parser  # the defaults of this subcommand's flags

    defaults = vars(build_parser().parse_args(["serve"]))
    server, models = settings_from_args(args, defaults)
    if args.rpc_servers:  # the workers' timeout, for every model the server loads (pylampe.rpc.connect)
        os.environ["GGML_RPC_TIMEOUT"] = str(args.rpc_timeout)
    _native.set_llama_logging(any(m.verbose for m in models))
    lines = _check_models(models)
    _check_port(server.host, server.port)
    app = load(lambda _path: create_app(server, models), Path(models[0].model))
    scheme = "https" if server.ssl_certfile else "http"
    base = f"{scheme}://{server.host}:{server.port}"
    page = "" if server.no_webui else f"chat page {base}/, "
    print(f"pylampe serve: {page}API {base}/v1, {'API key required, ' if server.api_key else ''}models:",
          file=sys.stderr)
    print("\n".join(lines), file=sys.stderr, flush=True)
    uvicorn.run(app, host=server.host, port=server.port, ssl_keyfile=server.ssl_keyfile,
                ssl_certfile=server.ssl_certfile, log_level="info")
    return 0
