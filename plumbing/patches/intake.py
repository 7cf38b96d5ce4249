"""What daphne does before the application sees a request: a header deadline and the body limit.

daphne (Twisted's ``HTTPChannel``) reads a whole request, body included, before it calls
the application, and spools a body over 100 KB to a temporary file: a 300 MB body with a
``Content-Length`` far over GATEWAY_MAX_BODY_BYTES was written to disk in full before the
gateway could say 413 (issue 12). Its only deadline is an idle timeout that every byte
restarts, so 300 sockets trickling one header byte at a time stayed open indefinitely.

Two hooks on Twisted's request parsing, installed only when daphne serves the process:

- **Body limit.** When the headers are in (``gotLength``), a ``Content-Length`` over the
  limit is answered 413 at once, OpenAI-shaped, and nothing of the body is kept; a
  chunked body is counted as it arrives and answered the same way the moment it passes
  the limit. The connection then closes the way nginx's ``lingering_close`` does: our
  write side is shut, what the client still sends is read and dropped for at most
  LINGER seconds, so that a client busy sending (httpx sends the whole body before
  reading) gets to read the answer instead of a reset.
- **Header deadline.** A connection must deliver a request's complete headers within
  ``header_timeout`` seconds of its first byte (of the connection, for the first
  request); otherwise it is answered 408 and closed.

Each refusal is handed to ``on_refused`` (the audit log: one row per API request, even
these).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.errors import BridgeError, RequestTooLargeError

logger = logging.getLogger("gateway")

LINGER = 2.0  # seconds a refused request's connection keeps reading (and dropping) before it closes
REFUSED = "_gateway_refused"  # set on a daphne request answered here: Twisted must not process it


@dataclass
class Refusal:
    """A request answered before the application saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    client_ip: str | None
    error: BridgeError
    request_bytes: int  # declared (Content-Length) or received so far (chunked)


# Records the refusal; returns the request id to answer with (None: none).
Hook = Callable[[Refusal], str | None]


def _headers(request: Any) -> dict[str, str]:
    return {name.decode("latin-1").lower(): b",".join(values).decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()}


def _client_ip(request: Any) -> str | None:
    peer = request.channel.transport.getPeer() if request.channel is not None else None
    return getattr(peer, "host", None)


def _answer(error: BridgeError, request_id: str | None) -> bytes:
    body = orjson.dumps(error.to_dict())
    head = [f"HTTP/1.1 {error.status} {'Payload Too Large' if error.status == 413 else 'Error'}",
            "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
            "X-Content-Type-Options: nosniff"]
    if request_id:
        head.append(f"x-request-id: {request_id}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _refuse(request: Any, error: BridgeError, request_bytes: int, on_refused: Hook, reactor: Any) -> None:
    """Answer ``request`` with ``error`` from here, drop the rest of its body, and close."""
    setattr(request, REFUSED, True)
    channel = request.channel
    # Before the body, Twisted keeps the request line on the channel (the request gets it at the end).
    method, uri = getattr(channel, "_command", b""), getattr(channel, "_path", b"")
    refusal = Refusal(method=method.decode("latin-1"), path=uri.decode("latin-1").split("?", 1)[0],
                      headers=_headers(request), client_ip=_client_ip(request), error=error,
                      request_bytes=request_bytes)
    request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the answer
    request_id = None
    try:
        request_id = on_refused(refusal)
    except Exception:
        logger.exception("a refused request could not be recorded")
    transport = channel.transport

    def drop(data: bytes) -> None:
        return None

    # Everything the client still sends is read and dropped (never parsed, never kept).
    channel.dataReceived = channel.rawDataReceived = channel.lineReceived = drop
    channel.setTimeout(None)
    transport.write(_answer(error, request_id))
    if hasattr(transport, "loseWriteConnection"):
        transport.loseWriteConnection()
    reactor.callLater(LINGER, transport.abortConnection)


# What this patch wraps (checked by plumbing/patches/__init__.py before anything is patched).
TARGETS = (("daphne.http_protocol", "WebRequest", ("gotLength", "handleContentChunk", "process")),
           ("twisted.web.http", "HTTPChannel", ("connectionMade", "dataReceived", "allHeadersReceived",
                                                "requestDone", "connectionLost")))


def install(limit: int, header_timeout: float, on_refused: Hook) -> None:
    """Add the body limit and the header deadline to daphne's request parsing."""
    from daphne.http_protocol import WebRequest
    from twisted.internet import reactor
    from twisted.web.http import HTTPChannel

    if getattr(WebRequest, "_gateway_intake", False):
        return
    WebRequest._gateway_intake = True

    def too_large(request: Any, received: int) -> None:
        error = RequestTooLargeError(f"Request body is larger than {limit} bytes.", param=None)
        _refuse(request, error, received, on_refused, reactor)

    got_length = WebRequest.gotLength
    handle_chunk = WebRequest.handleContentChunk
    process = WebRequest.process

    def gotLength(self: Any, length: int | None) -> None:  # noqa: N802 (Twisted's names)
        self._gateway_received = 0
        if length is not None and length > limit:
            self.content = None
            too_large(self, length)
            return
        got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:  # noqa: N802
        if getattr(self, REFUSED, False):
            return
        self._gateway_received = getattr(self, "_gateway_received", 0) + len(data)
        if self._gateway_received > limit:
            too_large(self, self._gateway_received)
            return
        handle_chunk(self, data)

    def process_unless_refused(self: Any) -> Any:
        if getattr(self, REFUSED, False):
            return None
        return process(self)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.process = process_unless_refused
    _install_deadline(HTTPChannel, header_timeout, reactor)


def _install_deadline(channel_class: Any, seconds: float, reactor: Any) -> None:
    """Give every request's headers ``seconds`` from their first byte (or from the connection's opening)."""
    if seconds <= 0:
        return
    made, data_received = channel_class.connectionMade, channel_class.dataReceived
    headers_in, done, lost = channel_class.allHeadersReceived, channel_class.requestDone, channel_class.connectionLost

    def too_slow(self: Any) -> None:
        self._gateway_deadline = None
        peer = getattr(self.transport.getPeer(), "host", "-")
        logger.warning("connection from %s closed: no complete request headers within %.0fs", peer, seconds)
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.transport.loseConnection()
        reactor.callLater(LINGER, self.transport.abortConnection)

    def start(self: Any) -> None:
        self._gateway_deadline = reactor.callLater(seconds, too_slow, self)

    def stop(self: Any) -> None:
        deadline = getattr(self, "_gateway_deadline", None)
        if deadline is not None and deadline.active():
            deadline.cancel()
        self._gateway_deadline = None

    def connectionMade(self: Any) -> None:  # noqa: N802
        made(self)
        start(self)

    def dataReceived(self: Any, data: bytes) -> None:  # noqa: N802
        if getattr(self, "_gateway_between", False):  # the first byte of the next request on this connection
            self._gateway_between = False
            start(self)
        data_received(self, data)

    def allHeadersReceived(self: Any) -> None:  # noqa: N802
        stop(self)
        headers_in(self)

    def requestDone(self: Any, request: Any) -> None:  # noqa: N802
        self._gateway_between = True  # before: the next request may already be buffered
        done(self, request)

    def connectionLost(self: Any, reason: Any) -> None:  # noqa: N802
        stop(self)
        lost(self, reason)

    channel_class.connectionMade = connectionMade
    channel_class.dataReceived = dataReceived
    channel_class.allHeadersReceived = allHeadersReceived
    channel_class.requestDone = requestDone
    channel_class.connectionLost = connectionLost
