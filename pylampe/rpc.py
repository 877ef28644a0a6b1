"""llama.cpp RPC workers: a model's layers and their KV cache on other machines.

``Llama(rpc_servers=...)`` and ``--rpc`` connect to workers started with ``pylampe rpc-server`` (llama.cpp's
``rpc-server`` built from this package's patched tree, so that it computes the LaMPE op). The connection is
checked here before llama.cpp makes it, so that an unreachable worker or one of another build is a one-line
error; a worker that fails later turns the model's next evaluation into an ``RpcWorkerError``.
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path
from typing import List, Optional, Sequence, Set, Union

from . import _ggml
from ._native import LIB_DIR

# llama.cpp's worker, installed next to the libraries (its run path is $ORIGIN)
SERVER_BINARY: Path = LIB_DIR / "rpc-server"
DEFAULT_PORT = 50052
DEFAULT_TIMEOUT_S = 300.0

# endpoints whose devices are registered with ggml: once per process (registering twice duplicates devices)
_registered: Set[str] = set()


class RpcWorkerError(RuntimeError):
    """An RPC worker cannot be used, or stopped answering."""


def parse_endpoints(spec: Union[str, Sequence[str]]) -> List[str]:
    """HOST:PORT[,HOST:PORT...] (or a sequence of them), validated.

    Raises:
        ValueError: an endpoint is not HOST:PORT with a port in 1..65535.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    endpoints = []
    for item in (i.strip() for i in items):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"RPC worker {item!r} is not HOST:PORT")
        endpoints.append(f"{host}:{int(port)}")
    if not endpoints:
        raise ValueError("no RPC worker given")
    return endpoints


def _reachable(endpoint: str, timeout_s: float) -> None:
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise RpcWorkerError(f"cannot reach RPC worker {endpoint}: {e.strerror or e}") from e


def connect(endpoints: Sequence[str], timeout_s: Optional[float] = None) -> None:
    """Register the workers' devices with llama.cpp, before a model is loaded onto them (a model loaded again
    after a worker failed connects anew).

    Args:
        timeout_s: how long a worker may take to answer any command (llama.cpp's GGML_RPC_TIMEOUT): longer
            than its slowest graph computation, so that only a worker that hangs fails. None: the
            environment's GGML_RPC_TIMEOUT, else DEFAULT_TIMEOUT_S.

    Raises:
        RpcWorkerError: a worker does not answer, or is not a ``pylampe rpc-server`` (a stock llama.cpp
            worker lacks the LaMPE op; llama.cpp refuses it at the handshake).
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get("GGML_RPC_TIMEOUT") or DEFAULT_TIMEOUT_S)
    os.environ["GGML_RPC_TIMEOUT"] = str(timeout_s)
    for endpoint in endpoints:
        _reachable(endpoint, min(timeout_s, 10.0))
        if endpoint in _registered:
            continue
        if not _ggml.rpc_add_server(endpoint):
            raise RpcWorkerError(
                f"RPC worker {endpoint} refused the connection: it is not a `pylampe rpc-server` of this "
                "version (a stock llama.cpp rpc-server lacks the LaMPE op); start it with `pylampe rpc-server`"
            )
        _registered.add(endpoint)


def devices_array(endpoints: Sequence[str]) -> Optional["ctypes.Array[ctypes.c_void_p]"]:
    """llama_model_params.devices for a model on these workers (and the local GPUs): a NULL-terminated
    array, or None (llama.cpp's default) while no worker is registered in the process."""
    if not _registered:
        return None
    devices = _ggml.offload_devices(list(endpoints))
    return (ctypes.c_void_p * (len(devices) + 1))(*devices, None)


def check(endpoints: Sequence[str]) -> None:
    """Raises RpcWorkerError if a worker the model uses has failed since it was loaded."""
    failed = [e for e in endpoints if _ggml.rpc_failed(e)]
    if failed:
        raise RpcWorkerError(
            f"RPC worker {', '.join(failed)} stopped answering (lost connection or timeout); "
            "the model must be loaded again once it is back"
        )
