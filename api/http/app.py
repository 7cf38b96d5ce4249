"""Serve the API (``/v1/``) straight from ASGI: its views are called without Django's request handler.

Django's ASGIHandler, under every request, enters a ``ThreadSensitiveContext`` and sends
``request_started``/``request_finished`` through ``sync_to_async``: a new thread per request
for its sync hops, and its stock middleware adds a dozen more: serving /v1/ through it
takes 1.58x the gateway CPU per bridged stream at 50 concurrent streams and 1.77x at 1,
at 0.58x the requests per second
(bench --compare, 5 interleaved rounds, 2026-12-01, commit 69d68af). The API views need none of it: they
take no cookies, session or CSRF token, answer every error themselves
(api/http/endpoint.py), and do their database work on long-lived threads
(plumbing/dbthread.py), so there is no request-scoped connection for those signals to
close. Everything outside ``/v1/`` (admin, request log, health, metrics) still goes
through Django's handler and its middleware.
"""
from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

from api.http.answers import JsonAnswer, StreamAnswer
from api.http.errors import error_response
from api.http.paths import api_path, unknown_path_message, unserved
from bridge.errors import GatewayError, InvalidRequestError
from plumbing.asgitypes import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway")

# What Django's SecurityMiddleware would have added to an API answer.
API_HEADERS = ((b"x-content-type-options", b"nosniff"),)


def is_api(scope: Scope) -> bool:
    """Whether this app serves the request (the shutdown lets these answer their own refusal)."""
    return scope["type"] == "http" and api_path(scope["path"]) is not None


class ApiApp:
    """ASGI app: API requests (``/v1/``, or without it) go to their async view here, all else to ``app`` (Django).

    A path that nothing serves gets the API's JSON 404 rather than Django's HTML page.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = api_path(scope["path"])
        if path is None:
            if not unserved(scope["path"]):
                return await self.app(scope, receive, send)
            if await read_body(receive) is not None:
                await send_response(error_response(_unknown(scope["path"])), send)
            return
        if path != scope["path"]:  # /responses: served as /v1/responses
            scope = {**scope, "path": path, "raw_path": b"/v1" + scope.get("raw_path", scope["path"].encode())}
        body = await read_body(receive)
        if body is None:  # the client left before its request was complete: nothing to answer
            return
        await serve(scope, body, receive, send)


def _unknown(path: str) -> InvalidRequestError:
    return InvalidRequestError(unknown_path_message(path), code="unknown_url", status=404)


async def read_body(receive: Receive) -> bytes | None:
    """Return the request body, or None if the client disconnected first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def serve(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Answer one API request; a client disconnect cancels it, as Django's handler would.

    The disconnect cancels this very task wherever it waits (an upstream that has not
    answered yet, a stalled stream); ``api_view`` (an answer not yet made) or
    ``send_response`` (an answer being sent) then closes the upstream and settles the audit
    row. No second task: one fewer hop through the event loop before the first byte, for
    every request.
    """
    try:
        request: HttpRequest = ASGIRequest(scope, io.BytesIO(body))
    except UnicodeDecodeError:
        return await send_response(error_response(InvalidRequestError("The request path is not valid UTF-8.")), send)
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    def on_message(message: asyncio.Future[Message]) -> None:
        nonlocal disconnected
        if message.cancelled() or message.exception() is not None or task.done():
            return
        if message.result()["type"] == "http.disconnect":
            disconnected = True
            task.cancel()

    listener = asyncio.ensure_future(receive())
    listener.add_done_callback(on_message)
    try:
        await send_response(await dispatch(request), send)
    except asyncio.CancelledError:
        if not disconnected:  # cancelled by the server (shutdown), not by the client
            raise
        task.uncancel()
    finally:
        listener.remove_done_callback(on_message)
        listener.cancel()


async def dispatch(request: HttpRequest) -> HttpResponseBase:
    """Return the API view's answer; an unknown path or a crash is still an OpenAI-shaped error."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return error_response(_unknown(request.path_info))
    view: Callable[..., Awaitable[HttpResponseBase]] = match.func
    try:
        return await view(request, *match.args, **match.kwargs)
    except Exception as exc:  # api_view answers its own errors; this is for anything outside it
        logger.exception("unhandled error on %s", request.path_info)
        return error_response(GatewayError(f"The gateway failed to handle this request ({type(exc).__name__})."))


async def send_response(response: HttpResponseBase, send: Send) -> None:
    """Send ``response`` over ASGI: headers, then its body, streamed part by part as it comes.

    An answer is closed whatever happens here: a ``StreamAnswer``'s ``aclose`` ends its
    stream, and each releases the answer it holds, which settles the request's audit row
    (api/http/answers.py), even if the client left before the first part.
    """
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    headers += [header for header in API_HEADERS if header[0].decode() not in response]
    start = {"type": "http.response.start", "status": response.status_code, "headers": headers}
    if not isinstance(response, StreamAnswer):
        try:
            await send(start)
            await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]
        finally:
            if isinstance(response, JsonAnswer):
                response.sent()
        return
    heartbeats = None
    try:
        await send(start)
        if response.beat is not None and response.every > 0:
            heartbeats = asyncio.ensure_future(_heartbeats(response, send))
        async for part in response:
            await send({"type": "http.response.body", "body": part, "more_body": True})
    finally:
        if heartbeats is not None:
            heartbeats.cancel()
        await response.aclose()
    await send({"type": "http.response.body"})


async def _heartbeats(response: StreamAnswer, send: Send) -> None:
    """Send the stream's heartbeat while it waits on its upstream: after ``every`` to twice that of silence.

    A task per stream, looking once per interval, rather than a timer per part: a stream that
    flows costs one wake-up per interval. The heartbeat is sent between parts only, numbered
    after what was sent (the pipeline's ``beat``), and counted as sent to the client. Its cost
    is below the noise: gateway CPU per request with it off (GATEWAY_STREAM_HEARTBEAT=0) over
    on (10 s), bridge 0.99x at 1 stream and 1.08x at 50, passthrough 1.07x and 1.01x
    (bench --compare, 5 interleaved rounds, 2026-12-07, commit dcb9d3b:
    bench/results/issue21-heartbeat-ab.json).
    """
    assert response.beat is not None
    seen = -1
    while True:
        await asyncio.sleep(response.every)
        if response.busy or response.sent_parts != seen:
            seen = response.sent_parts
            continue
        data = response.beat()
        if data:
            response.exchange.sent(data)
            await send({"type": "http.response.body", "body": data, "more_body": True})
