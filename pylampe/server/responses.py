"""Errors as OpenAI's API answers them: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Optional

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .proxy import LampeProxy


def error_response(status: int, message: str, code: Optional[str] = None, param: Optional[str] = None,
                   kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


async def worker_gone(proxy: LampeProxy, e: Exception) -> JSONResponse:
    """503 for a request whose RPC worker went away; the model's layers on that worker went with
    it, so the model is closed and the next request loads it again."""
    await run_in_threadpool(proxy.drop)
    return error_response(503, str(e), "rpc_worker_unavailable")
