"""Back-pressure under daphne: an ASGI ``send()`` that waits while the client is not reading.

daphne's ``send()`` hands each body part to Twisted and returns at once: Twisted's
transport buffers whatever it cannot write, without limit. A client that stops reading a
40 MB answer therefore made the gateway read the upstream at full speed into memory
(5 such clients: RSS 77 → 1,068 MB, issue 12). Twisted does know when a socket's buffer
is full: it pauses the transport's *producer* past ``bufferSize`` (64 KiB) unwritten
bytes and resumes it once the buffer drains. So each HTTP response registers a push
producer on its daphne request, and ``send()`` of a body part waits, after handing the
part over, until that producer is resumed. The view's ``async for`` over the upstream
then stops pulling, httpx stops reading, and the upstream's own TCP window closes: what
one slow client holds is Twisted's 64 KiB plus one part (and the kernel's buffers).

Nothing else changes: a part is never held back before it is written (no added latency
for a client that reads), and a lost connection resumes the producer (``stopProducing``)
so the application notices the disconnect as it always did. A WebSocket's ``send()`` of a
message waits the same way (``_socket_writable``).
"""
from __future__ import annotations

import asyncio
from typing import Any

WAITING = "_gateway_flow"  # the attribute of a daphne request that holds its Flow


class Flow:
    """A Twisted push producer that is an asyncio event: set while the client's socket takes more."""

    def __init__(self, writable: bool) -> None:
        self.writable = asyncio.Event()
        if writable:
            self.writable.set()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's IPushProducer names)
        self.writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.writable.set()

    def stopProducing(self) -> None:  # noqa: N802  the connection is gone: nothing to wait for
        self.writable.set()


def _started(request: Any) -> None:
    channel = getattr(request, "channel", None)
    if channel is None or getattr(request, "producer", None) is not None:
        return
    flow = Flow(writable=not getattr(channel, "_waitingForTransport", False))
    request.registerProducer(flow, True)
    setattr(request, WAITING, flow)


def _ending(request: Any) -> None:
    if getattr(request, WAITING, None) is not None:
        setattr(request, WAITING, None)
        if getattr(request, "channel", None) is not None and request.producer is not None:
            request.unregisterProducer()  # before finish(), which wants no producer left


async def _socket_writable(protocol: Any) -> None:
    """Wait while a WebSocket's client is not reading: the same producer, on the socket's transport.

    A Responses WebSocket (api/socket.py) sends one message per event; without this, a
    client that stops reading had every event of its answer buffered in Twisted.
    """
    flow: Flow | None = getattr(protocol, WAITING, None)
    if flow is None:
        transport = getattr(protocol, "transport", None)
        if transport is None:
            return
        # The socket came from an HTTP request (the upgrade): Twisted's HTTPChannel is still its
        # transport's producer, and is paused in vain. The socket's own flow takes its place.
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        flow = Flow(writable=True)
        try:
            protocol.registerProducer(flow, True)
        except RuntimeError:  # a producer that would not go: leave it be
            return
        setattr(protocol, WAITING, flow)
    if not flow.writable.is_set():
        await flow.writable.wait()


# What this patch wraps (checked by plumbing/patches/__init__.py before anything is patched).
TARGETS = (("daphne.server", "Server", ("handle_reply",)),
           ("twisted.web.http", "Request", ("registerProducer", "unregisterProducer")))


def install() -> None:
    """Make daphne's ``send()`` wait for a slow client's socket (only when daphne serves this process)."""
    from daphne.http_protocol import WebRequest
    from daphne.server import Server

    if getattr(Server, "_gateway_flow", False):
        return
    handled = Server.handle_reply

    async def handle_reply(self: Server, protocol: Any, message: dict[str, Any]) -> None:
        is_http = isinstance(protocol, WebRequest)
        if is_http and message["type"] == "http.response.body" and not message.get("more_body", False):
            _ending(protocol)
        await handled(self, protocol, message)
        if not is_http:
            if message["type"] == "websocket.send":
                await _socket_writable(protocol)
            return
        if message["type"] == "http.response.start":
            _started(protocol)
            return
        flow: Flow | None = getattr(protocol, WAITING, None)
        if flow is not None and not flow.writable.is_set():
            await flow.writable.wait()

    Server.handle_reply = handle_reply
    Server._gateway_flow = True
