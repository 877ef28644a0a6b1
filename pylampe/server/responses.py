"""Errors as OpenAI's API answers them: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Optional

from fastapi.responses import JSONResponse


def error_response(status: int, message: str, code: Optional[str] = None, param: Optional[str] = None,
                   kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)
