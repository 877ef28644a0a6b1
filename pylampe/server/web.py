"""The chat page at ``/``: its files, and the three routes it needs beyond the OpenAI API.

- ``POST /ui/documents?name=&model=&max_tokens=``: the body is a document file. It is converted
  as ``-f`` converts one (``server.uploads``), and its tokens, as the page's first question will
  start with them, are put into the model's KV cache (kept, restored from the document cache, or
  read): the answer says what was read, and the first question only evaluates its own tokens;
- ``GET /ui/progress``: the prompt evaluation in progress (the page's progress bar);
- ``POST /ui/stop``: stop the page's request on the model (``server.progress``).

The page then asks its questions over ``/v1/chat/completions`` (streamed), sending the document
as the first user message, and reads each turn's numbers from ``/extras/lampe``.

The page's files are served as they are (no build step, nothing fetched from elsewhere), with
a Content-Security-Policy that allows only them: no inline script, no other origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ..conversation import document_prefix
from ..documents import DocumentError
from ..metered import ContextOverflowError, Interrupted, MeteredLlama
from ..rpc import RpcWorkerError
from .documents import ServedDocuments, formats_chats
from .progress import REQUEST_ID_HEADER, PrefillMeter
from .proxy import LampeProxy
from .queue import ModelQueue
from .responses import error_response, worker_gone
from .uploads import UploadTooLarge, convert, display_name, receive, temporary_directory

STATIC = Path(__file__).parent / "static"
STATIC_PATH = "/ui/static"

# img-src data: lets the page use its inline SVG icons as CSS backgrounds; nothing else is allowed.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(llama: MeteredLlama, documents: ServedDocuments, text: str, name: str,
          max_tokens: Optional[int]) -> Dict[str, Any]:
    """Tokens of the document as the first question starts with them, read into the KV cache."""
    if formats_chats(llama):
        tokens = document_prefix(llama, text)
    else:  # another chat format lays the chat out its own way: counted, read with the first question
        tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    llama.check_fits(len(tokens), max_tokens)
    read = documents.read(llama, tokens, name) if formats_chats(llama) else None
    return {
        "tokens": len(tokens),
        "how": read.how if read else None,
        "read_seconds": round(read.seconds, 3) if read else None,
        "saved": bool(read and read.saved),
    }


def add_web_page(app: FastAPI, proxy: LampeProxy, queue: ModelQueue, documents: ServedDocuments,
                 meter: PrefillMeter, upload_limit: int, auth: Any) -> None:
    """The page at ``/``, its files under ``STATIC_PATH`` and its routes under ``/ui``."""
    router = APIRouter(tags=["Chat page"])

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.post("/ui/documents", summary="Read a document for the chat page", dependencies=auth)
    async def upload(request: Request, name: str = "", model: Optional[str] = None,
                     max_tokens: Optional[int] = None) -> Any:
        name = display_name(name)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > upload_limit:  # refused before a byte is read
            return error_response(413, str(UploadTooLarge(upload_limit)), code="upload_too_large")
        with temporary_directory() as tmp:
            try:
                path = await receive(request.stream(), upload_limit, Path(tmp))
            except UploadTooLarge as e:
                return error_response(413, str(e), code="upload_too_large")
            try:
                doc = await run_in_threadpool(convert, path, name)
            except DocumentError as e:
                return error_response(400, str(e), code="unreadable_document")
        lease = await queue.acquire()
        try:
            if await request.is_disconnected():  # stopped while it was converted or waited for the model
                return error_response(409, "stopped before the document was read", code="stopped")
            meter.begin(request.headers.get(REQUEST_ID_HEADER))
            llama: MeteredLlama = await run_in_threadpool(proxy, model)
            meter.attach(llama)
            try:
                read = await run_in_threadpool(_read, llama, documents, doc.text, name, max_tokens)
            except ContextOverflowError as e:
                return error_response(400, f"{name}: {e}: start pylampe serve with a larger -c, or ask for "
                                      "shorter answers", code="context_length_exceeded")
            except Interrupted:
                return error_response(409, "stopped before the document was read", code="stopped")
            except RpcWorkerError as e:
                return await worker_gone(proxy, e)
            n_ctx_train = llama._model.n_ctx_train()
            return {
                "name": name, "kind": doc.kind, "parts": doc.parts, "part_name": doc.part_name,
                "words": doc.words, "describe": doc.describe(), **read,
                "n_ctx": llama.n_ctx(), "n_ctx_train": n_ctx_train,
                "multiple_of_T": round(read["tokens"] / n_ctx_train, 2) if n_ctx_train > 0 else None,
                "model": proxy.current_alias, "text": doc.text,
            }
        finally:
            await lease.release()

    @router.get("/ui/progress", summary="The prompt evaluation in progress", dependencies=auth)
    async def progress() -> Dict[str, Any]:
        return meter.snapshot()

    @router.post("/ui/stop", summary="Stop the chat page's request on the model", dependencies=auth)
    async def stop(request: Request) -> JSONResponse:
        request_id = request.headers.get(REQUEST_ID_HEADER, "")
        return JSONResponse({"stopping": bool(request_id) and meter.stop(request_id)})

    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="static")

