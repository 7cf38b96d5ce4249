"""ASGI middleware that stops reading a request body once it passes GATEWAY_MAX_BODY_BYTES.

Django reads the whole body before a view runs (spooling it to disk when large). This
refuses to read past the limit, from the Content-Length up front or by counting a chunked
body, and flags the request so the API view answers 413 and writes its audit row.
"""
from __future__ import annotations

from plumbing.asgitypes import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "gateway.body_too_large"
_END = {"type": "http.request", "body": b"", "more_body": False}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            scope[TOO_LARGE] = True
            nothing_sent = False

            async def nothing() -> Message:
                # Answer Django's read with an empty body; then pass disconnects through.
                nonlocal nothing_sent
                if not nothing_sent:
                    nothing_sent = True
                    return dict(_END)
                return await receive()

            return await self.app(scope, nothing, send)

        seen = 0

        async def counted() -> Message:
            nonlocal seen
            if scope.get(TOO_LARGE):
                return await receive()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    scope[TOO_LARGE] = True
                    return dict(_END)
            return message

        await self.app(scope, counted, send)
