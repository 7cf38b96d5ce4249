"""Responses over a WebSocket: ``ws(s)://host/v1/responses``, the transport Codex keeps open per session.

A provider with ``supports_websockets = true`` gets one socket per Codex session: each turn
is a ``response.create`` message carrying ``previous_response_id`` and only the new input
items, answered by the same Responses events, one text message each. Each message is one
request of the HTTP API, answered by the API itself, in process: the message (without its
``type``) becomes the body of a ``POST /v1/responses`` sent through the same ASGI app that
serves HTTP (key, rate limit, routing and failover, bridge or passthrough, stored state, the
audit row, the drain's count), and the answer's server-sent events are sent on as messages.
What only the socket adds:

- the upgrade is authenticated like the API (``Authorization: Bearer``), and refused with
  the API's status and error body (plumbing/patches/websocket.py); a refused upgrade, and a
  message refused before it becomes a request, leave their row through ``Exchange.refuse``;
- the latest response is remembered by the connection, ``store: false`` too
  (api/stored/memory.py), so a turn may continue it with only its new items;
- ``generate: false`` (Codex's warm-up) is marked on its request: the API answers it with a
  response with no output, without asking an upstream, that the first turn continues;
- messages are answered one at a time, in order (a ``response.create`` sent while one is
  being answered waits its turn, as on the OpenAI API's default lane); ``stream_id``
  lanes and ``background`` are refused;
- errors are ``error`` events with the HTTP status they stand for; a connection older than
  GATEWAY_WEBSOCKET_MAX_AGE is told ``websocket_connection_limit_reached`` and closed (Codex
  reconnects and sends the turn whole);
- closing the socket mid-answer is the client hanging up (the upstream is cancelled, the
  row says ``client_disconnected``); when the process drains, an idle socket is closed
  (1000) and a busy one once its answer is out.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError

from api.http.auth import KeyRefused, authenticate
from api.http.errors import error_response
from api.pipeline import client
from api.stored.memory import SCOPE_KEY, WARM_UP_KEY, SocketMemory
from bridge.errors import (
    BridgeError,
    DatabaseUnavailableError,
    GatewayError,
    InvalidRequestError,
    socket_error_event,
)
from bridge.sse import SSEDecoder
from bridge.wire import TERMINAL_EVENTS
from logs.audit.exchange import TRANSPORT_KEY, Exchange
from logs.models import Transport
from plumbing.asgitypes import ASGIApp, Message
from plumbing.patches.websocket import supported
from plumbing.shutdown import SHUTDOWN

logger = logging.getLogger("gateway")

ENDPOINT = "responses"
DISCONNECT_WAIT = 10.0  # seconds for the answer under way to end once its client has left
# The close code when the process drains or the connection is too old: the client reconnects. A normal
# closure: autobahn lets a server send only 1000 or 3000-4999 (not 1001, "going away").
GOING_AWAY = 1000
# Terminal events: their Response is remembered (completed, incomplete) or its parent forgotten (failed).
_TERMINAL = tuple(f'"{kind}"'.encode() for kind in TERMINAL_EVENTS)
# Fields of a message that are not the HTTP body's: the answer is always a stream of messages, and
# `generate` (false: the warm-up) is answered here.
_TRANSPORT_FIELDS = ("type", "stream", "generate")


class ResponsesSocket(AsyncWebsocketConsumer):
    """One client's Responses WebSocket (``as_asgi(api=...)``: the ASGI app that answers ``/v1/responses``)."""

    def __init__(self, api: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api

    async def websocket_connect(self, message: Message) -> None:
        upgrade = _upgrade_request(self.scope)
        try:
            self.key, _ = await authenticate(upgrade)
        except KeyRefused as exc:  # a revoked key is named on the row
            await self._refuse(upgrade, exc, exc.key)
            return
        except BridgeError as exc:
            await self._refuse(upgrade, exc, None)
            return
        except DatabaseError:
            await self._refuse(upgrade, DatabaseUnavailableError(), None)
            return
        self.authorization = upgrade.headers.get("authorization", "")
        self.memory = SocketMemory()
        self.opened = time.monotonic()
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.busy = False  # a message is being answered
        self.hung_up = asyncio.Event()  # the client left: the request being answered is told so
        self.closing = False
        await self.accept()
        self.worker = asyncio.ensure_future(self._work())
        self.watcher = asyncio.ensure_future(self._close_when_draining())

    async def websocket_receive(self, message: Message) -> None:
        if message.get("text") is not None:
            self.messages.put_nowait(message["text"])
        elif message.get("bytes") is not None:
            self.messages.put_nowait(message["bytes"])

    async def websocket_disconnect(self, message: Message) -> None:
        worker = getattr(self, "worker", None)
        if worker is not None:
            self.closing = True
            self.hung_up.set()
            self.messages.put_nowait(b"")  # wake the worker if it waits for a message
            self.watcher.cancel()
            # The request being answered sees the client leave and ends (its row says so); one
            # that does not within DISCONNECT_WAIT is cancelled, and the consumer still ends cleanly.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker), timeout=DISCONNECT_WAIT)
            worker.cancel()
        await super().websocket_disconnect(message)

    # -- the worker: one message at a time ------------------------------------------------

    async def _work(self) -> None:
        while not self.closing:
            raw = await self.messages.get()
            if self.closing:
                return
            self.busy = True
            try:
                await self._answer(raw)
            except Exception:
                logger.exception("responses socket: a message failed")
                await self._send_event(GatewayError("The gateway failed to answer this message.").to_socket_event())
            finally:
                self.busy = False
            if SHUTDOWN.draining and self.messages.empty():
                await self._close(GOING_AWAY)
                return

    async def _answer(self, raw: str | bytes) -> None:
        """Answer one message: locally (a refusal, the warm-up), else through the HTTP API."""
        body_bytes = raw.encode() if isinstance(raw, str) else raw
        try:
            if isinstance(raw, bytes):
                raise InvalidRequestError("Send each event as a text message of JSON, not binary.",
                                          code="invalid_message")
            body, warm_up = self._message(body_bytes)
        except InvalidRequestError as exc:
            self._record(exc, body_bytes)
            await self._send_event(exc.to_socket_event())
            if exc.code == "websocket_connection_limit_reached":
                await self._close(GOING_AWAY)
            return
        # The warm-up goes as the client sent it (the API ignores what is not the Responses body): its
        # row keeps the message; a turn goes as the body of a POST /v1/responses.
        await self._ask_api(body_bytes if warm_up else orjson.dumps(body), body.get("previous_response_id"),
                            warm_up=warm_up)

    def _message(self, raw: bytes) -> tuple[dict[str, Any], bool]:
        """The request body a ``response.create`` message stands for, and whether it is the warm-up.

        InvalidRequestError for anything else.
        """
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("We could not parse the JSON of your message. Send a JSON object.",
                                      code="invalid_json") from None
        if not isinstance(message, dict):
            raise InvalidRequestError("A message must be a JSON object with a `type`.", code="invalid_message")
        kind = message.get("type")
        if kind != "response.create":
            raise InvalidRequestError(f"Unknown event type {kind!r}: this socket takes `response.create`.",
                                      param="type", code="unknown_event_type")
        age = time.monotonic() - self.opened
        if age > settings.GATEWAY_WEBSOCKET_MAX_AGE:
            raise InvalidRequestError(
                f"Responses websocket connection limit reached ({int(settings.GATEWAY_WEBSOCKET_MAX_AGE // 60)} "
                "minutes). Create a new websocket connection to continue.", code="websocket_connection_limit_reached")
        for name, why in (("stream_id", "Stream lanes are not supported by this gateway: send one response.create "
                                        "at a time (they are answered in order)."),
                          ("background", "Background responses are not available over a WebSocket; use HTTP.")):
            if message.get(name) not in (None, False):
                raise InvalidRequestError(why, param=name, code="unsupported_parameter")
        if message.get("generate") not in (None, True, False):
            raise InvalidRequestError("`generate` must be true or false.", param="generate", code="invalid_type")
        body = {name: value for name, value in message.items() if name not in _TRANSPORT_FIELDS}
        body["stream"] = True
        return body, message.get("generate") is False

    async def _ask_api(self, body: bytes, previous_id: Any, *, warm_up: bool) -> None:
        """Send the body through the HTTP API and each event of its answer on as a message."""
        scope = _request_scope(self.scope, self.authorization, len(body), self.memory)
        if warm_up:
            scope[WARM_UP_KEY] = True
        delivered = False
        status, content_type, error_body = 0, "", bytearray()
        headers: dict[str, str] = {}
        decoder = SSEDecoder()

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self.hung_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.update((name.decode("latin-1").lower(), value.decode("latin-1"))
                               for name, value in message.get("headers", []))
                content_type = headers.get("content-type", "")
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if status == 200 and content_type.startswith("text/event-stream"):
                    for data in decoder.feed(chunk):
                        await self._relay_event(data)
                else:
                    error_body.extend(chunk)

        await self.api(scope, receive, send)
        if error_body:  # an error answer: the same status, error object and back-off headers, as an event
            self.memory.forget(previous_id if isinstance(previous_id, str) else None)
            try:
                parsed = orjson.loads(bytes(error_body))
            except orjson.JSONDecodeError:
                parsed = bytes(error_body).decode("utf-8", "replace")
            await self._send_event(socket_error_event(status, parsed, client.backoff_headers(headers)))

    async def _relay_event(self, data: bytes) -> None:
        head = data[:64]
        if any(name in head for name in _TERMINAL):
            event = orjson.loads(data)
            response = event.get("response") or {}
            if event.get("type") == "response.failed":
                self.memory.forget(response.get("previous_response_id"))
            elif isinstance(response.get("id"), str):
                output = [item for item in response.get("output") or [] if isinstance(item, dict)]
                self.memory.remember(response["id"], output)
        if not self.closing:
            await self.send(text_data=data.decode())

    # -- helpers ----------------------------------------------------------------------

    async def _send_event(self, event: dict[str, Any]) -> None:
        if not self.closing:
            await self.send(text_data=orjson.dumps(event).decode())

    async def _close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            self.messages.put_nowait(b"")  # wake the worker, which then ends
            await self.close(code=code)

    async def _close_when_draining(self) -> None:
        await SHUTDOWN.until_draining()
        if not self.busy and self.messages.empty():
            await self._close(GOING_AWAY)

    def _record(self, error: BridgeError, raw: bytes) -> None:
        """The audit row of a message refused here, before it became a request of the API."""
        request = _upgrade_request(self.scope, content_length=len(raw))
        exchange = Exchange.begin(request, ENDPOINT)
        exchange.key = self.key
        exchange.capture_request(raw)
        exchange.refuse(error)

    async def _refuse(self, upgrade: ASGIRequest, error: BridgeError, key: Any) -> None:
        """Refuse the upgrade with the API's status, headers and body, and write its one audit row."""
        exchange = Exchange.begin(upgrade, ENDPOINT)
        exchange.key = key
        exchange.refuse(error)
        if not supported(self.scope):  # a server without the denial extension answers 403 itself
            await self.close()
            return
        answer = error_response(error, exchange.request_id)
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.items()]
        await self.send_denial(answer.status_code, headers, answer.content)

    async def send_denial(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await self.base_send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await self.base_send({"type": "websocket.http.response.body", "body": body})


def _upgrade_request(scope: dict[str, Any], content_length: int = 0) -> ASGIRequest:
    """The upgrade as a Django request (GET, its headers and client), for the API's authentication and rows."""
    http = {"type": "http", "method": "GET", "path": scope.get("path", "/v1/responses"),
            "query_string": b"", "root_path": "", "headers": list(scope.get("headers", [])),
            "client": scope.get("client"), "server": scope.get("server"), TRANSPORT_KEY: Transport.WEBSOCKET}
    request = ASGIRequest(http, io.BytesIO())
    if content_length:
        request.META["CONTENT_LENGTH"] = str(content_length)
    return request


def _request_scope(scope: dict[str, Any], authorization: str, length: int, memory: SocketMemory
                   ) -> dict[str, Any]:
    """The HTTP scope of one ``response.create``: a POST to /v1/responses with the upgrade's key and client."""
    kept = [(name, value) for name, value in scope.get("headers", [])
            if name in (b"user-agent", b"openai-beta")]
    headers = [(b"authorization", authorization.encode("latin-1")), (b"content-type", b"application/json"),
               (b"content-length", str(length).encode()), (b"accept", b"text/event-stream"), *kept]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/responses", "raw_path": b"/v1/responses", "query_string": b"", "root_path": "",
            "headers": headers, "client": scope.get("client"), "server": scope.get("server"),
            TRANSPORT_KEY: Transport.WEBSOCKET, SCOPE_KEY: memory}
