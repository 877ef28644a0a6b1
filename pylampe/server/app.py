"""The OpenAI-compatible app: llama-cpp-python's server with pylampe models.

From ``llama_cpp.server`` it reuses the request and response schema, the
settings, the model proxy (through ``LampeProxy``), API-key authentication,
the OpenAI-style error handler and the routes it does not change
(embeddings, tokenize, detokenize). Three routes are pylampe's own:

- ``/v1/completions`` and ``/v1/chat/completions`` check, before anything is
  evaluated, that prompt + max_tokens fits the context, and answer HTTP 400
  (``context_length_exceeded``, naming the numbers) when it does not: a
  streaming request gets that status too, where llama-cpp-python would
  already have sent 200 and then cut the stream (it never truncates a
  prompt, but it silently lowers max_tokens). Requests queue for the model
  one at a time (FIFO), streaming ones included, so a sequence is never
  shared and nothing is interrupted;
- ``/v1/models`` answers at once, without waiting for that queue.

``GET /extras/lampe`` tells what the loaded model did last: prompt tokens
reused from the KV cache and evaluated, time to first token, LaMPE's
state (T, L, M, ...), and how the last document got into the KV cache.

The chat page at ``/`` (``server.web``) uses these routes, plus its own under ``/ui``; the
prompt evaluation of every request reports to a ``PrefillMeter`` (its progress bar), and the
page's Stop interrupts it or ends the answer at the next token.

Documents: a request whose prompt starts with a long document (see
``server.documents``) gets it from the document cache when it is there, so
that requests alternating between documents restore them in seconds.

KV reuse: the model's one sequence keeps the previous request's tokens;
llama-cpp-python evaluates only what follows the longest common prefix,
and pylampe.Llama sets L to the whole new prompt first.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import anyio
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette_context.middleware import RawContextMiddleware
from starlette_context.plugins import RequestIdPlugin  # type: ignore

import llama_cpp
from llama_cpp.server import app as upstream
from llama_cpp.server.errors import RouteErrorHandler
from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest, ModelList

from ..doc_cache import DocStore, default_dir
from ..metered import ContextOverflowError, Interrupted, MeteredLlama
from ..rpc import RpcWorkerError
from .documents import ServedDocuments
from .progress import REQUEST_ID_HEADER, PrefillMeter
from .proxy import LampeProxy
from .queue import Lease, ModelQueue
from .responses import error_response, worker_gone
from .settings import LampeModelSettings, LampeServerSettings
from .web import add_web_page

# The request fields that are not keyword arguments of create_(chat_)completion.
_EXCLUDE = {"n", "best_of", "logit_bias_type", "user", "min_tokens"}
_OWN_PATHS = {"/v1/completions", "/v1/chat/completions", "/v1/models"}


class _Route(RouteErrorHandler):
    """llama-cpp-python's OpenAI-style errors for what a handler raises, except that request
    validation (bad JSON, bad parameters) reaches the app's 400 handler instead of
    becoming a 500."""

    def get_route_handler(self) -> Any:
        handler = APIRoute.get_route_handler(self)

        async def route_handler(request: Request) -> Any:
            try:
                return await handler(request)
            except (HTTPException, RequestValidationError):
                raise
            except Exception as exc:
                status, error = self.error_message_wrapper(error=exc, body=None)
                return JSONResponse({"error": error}, status_code=status)

        return route_handler


def _overflow(e: ContextOverflowError, chat: bool) -> JSONResponse:
    where = "messages" if chat else "prompt"
    if e.max_tokens is None:
        message = (f"This model's maximum context length is {e.n_ctx} tokens. However, your "
                   f"{where} resulted in {e.prompt_tokens} tokens, which leaves no room for the "
                   "completion. Please reduce the length of the " + where + ".")
    else:
        message = (f"This model's maximum context length is {e.n_ctx} tokens. However, you "
                   f"requested {e.prompt_tokens + e.max_tokens} tokens ({e.prompt_tokens} in the "
                   f"{where}, {e.max_tokens} in the completion). Please reduce the length of the "
                   f"{where} or the completion (max_tokens).")
    return error_response(400, message, "context_length_exceeded", where)


def create_app(server_settings: LampeServerSettings, model_settings: List[LampeModelSettings]) -> FastAPI:
    """The app; loads the first model now (the others when a request names them)."""
    upstream.set_server_settings(server_settings)  # read by llama-cpp-python's authenticate()
    proxy = LampeProxy(model_settings)
    queue = ModelQueue(proxy)
    documents = ServedDocuments(None if server_settings.no_doc_cache else DocStore(
        Path(server_settings.doc_cache) if server_settings.doc_cache else default_dir(),
        server_settings.doc_cache_size))
    meter = PrefillMeter()

    app = FastAPI(
        middleware=[Middleware(RawContextMiddleware, plugins=(RequestIdPlugin(),))],
        title="pylampe: llama.cpp with LaMPE, OpenAI-compatible API",
        version=llama_cpp.__version__,
        root_path=server_settings.root_path,
    )
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"])
    app.state.proxy = proxy
    app.state.queue = queue
    ping = (lambda: b"") if server_settings.disable_ping_events else None

    async def queued_proxy() -> AsyncIterator[LampeProxy]:
        lease = await queue.acquire()
        meter.begin(None)  # a stop meant for an earlier request stops nothing here
        try:
            yield proxy
        finally:
            await lease.release()

    # llama-cpp-python's other routes take the model through this dependency.
    app.dependency_overrides[upstream.get_llama_proxy] = queued_proxy

    router = APIRouter(route_class=_Route)
    auth = [Depends(upstream.authenticate)]

    async def answer(request: Request, body: Union[CreateCompletionRequest, CreateChatCompletionRequest],
                     chat: bool) -> Any:
        kwargs = body.model_dump(exclude=_EXCLUDE)
        lease = await queue.acquire()
        meter.begin(request.headers.get(REQUEST_ID_HEADER))
        streaming = False
        try:
            # in a thread: naming another alias loads that model
            llama: MeteredLlama = await run_in_threadpool(
                upstream.prepare_request_resources, body, proxy, body.model, kwargs)
            meter.attach(llama)
            kwargs["model"] = body.model or proxy.current_alias  # echoed in the response
            create = llama.create_chat_completion if chat else llama.create_completion
            try:
                await run_in_threadpool(llama.check_request, create, **kwargs)
            except ContextOverflowError as e:
                return _overflow(e, chat)
            except ValueError as e:  # what the request asks cannot be done (logprobs, template)
                return error_response(400, str(e), param="messages" if chat else "prompt")
            try:
                await run_in_threadpool(documents.prepare, llama, kwargs, chat)
                if not kwargs.get("stream"):
                    return await run_in_threadpool(create, **kwargs)
            except Interrupted:
                return error_response(409, "the request was stopped", code="stopped")
            chunks = await run_in_threadpool(create, **kwargs)
            streaming = True
            return EventSourceResponse(
                _events(chunks, lease, queue if server_settings.interrupt_requests else None, proxy),
                sep="\n", ping_message_factory=ping,
                background=BackgroundTask(lease.release),
            )
        except RpcWorkerError as e:
            return await worker_gone(proxy, e)
        finally:
            if not streaming:
                await lease.release()

    @router.post("/v1/completions", summary="Completion", dependencies=auth,
                 response_model=Union[llama_cpp.CreateCompletionResponse, str], tags=["OpenAI V1"])
    async def create_completion(request: Request, body: CreateCompletionRequest) -> Any:
        if isinstance(body.prompt, list):
            if len(body.prompt) > 1:
                return error_response(400, "one prompt per request: this server answers a list of "
                              f"{len(body.prompt)} prompts with one", param="prompt")
            body.prompt = body.prompt[0] if body.prompt else ""
        return await answer(request, body, chat=False)

    @router.post("/v1/chat/completions", summary="Chat", dependencies=auth,
                 response_model=Union[llama_cpp.ChatCompletion, str], tags=["OpenAI V1"])
    async def create_chat_completion(request: Request, body: CreateChatCompletionRequest = Body()) -> Any:
        return await answer(request, body, chat=True)

    @router.get("/v1/models", summary="Models", dependencies=auth, tags=["OpenAI V1"])
    async def get_models() -> ModelList:
        return {"object": "list", "data": [
            {"id": alias, "object": "model", "owned_by": "me", "permissions": []} for alias in proxy
        ]}

    @router.get("/extras/lampe", summary="LaMPE state and the last request's tokens and timing",
                dependencies=auth, tags=["Extras"])
    async def lampe_state(proxy: LampeProxy = Depends(upstream.get_llama_proxy)) -> Dict[str, Any]:
        llama = proxy.current
        if llama is None:
            return {"model": None}
        turn = llama.last_turn
        return {
            "model": proxy.current_alias,
            "n_ctx": llama.n_ctx(),
            "n_ctx_train": llama._model.n_ctx_train(),
            "kv_tokens": llama.n_tokens,
            "lampe": dataclasses.asdict(llama.lampe) if llama.lampe else None,
            "state": llama.lampe_state(),
            "ubatches": llama.lampe_counters() if llama.lampe else None,
            "last_request": turn.as_dict() if turn else None,
            "last_document": dataclasses.asdict(documents.last) if documents.last else None,
        }

    app.include_router(router)
    if not server_settings.no_webui:
        add_web_page(app, proxy, queue, documents, meter, server_settings.upload_limit_mb << 20, auth)
    # the rest of llama-cpp-python's API, included (not appended as they are): a route made by
    # upstream's router ignores this app's dependency overrides and would get upstream's model, None
    rest = APIRouter()
    rest.routes.extend(r for r in upstream.router.routes if getattr(r, "path", None) not in _OWN_PATHS)
    app.include_router(rest)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(400, f"the request body is not valid JSON: {first.get('msg', '')}")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(400, f"invalid request: {where}: {first.get('msg', 'invalid value')}",
                      param=where or None)

    return app


async def _events(chunks: Any, lease: Lease, interrupt_for: Optional[ModelQueue],
                  proxy: LampeProxy) -> AsyncIterator[Dict[str, str]]:
    """Server-sent events of a streaming answer; the model's turn ends with the stream.

    With ``interrupt_for`` (--interrupt_requests true), the stream stops early when
    another request waits for the model, as llama-cpp-python's server does.
    """
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield {"data": json.dumps(chunk)}
            if interrupt_for is not None and interrupt_for.waiting():
                break
        yield {"data": "[DONE]"}
    except Exception as e:  # after the 200: report in the stream, as OpenAI does
        gone = isinstance(e, RpcWorkerError)
        if gone:
            await run_in_threadpool(proxy.drop)
        yield {"data": json.dumps({"error": {"message": str(e), "type": "internal_server_error",
                                             "param": None,
                                             "code": "rpc_worker_unavailable" if gone else None}})}
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(chunks.close)
            await lease.release()
