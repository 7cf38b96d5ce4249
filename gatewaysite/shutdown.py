"""Graceful shutdown under daphne: on SIGTERM, finish in-flight requests, write their audit rows, then exit.

Installed by ``gatewaysite/asgi.py``; the grace is GATEWAY_SHUTDOWN_GRACE (../shared/spec/contract.md).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import orjson
from django.conf import settings

from bridge import audit
from bridge import upstream as upstream_io
from bridge.errors import GatewayError
from gatewaysite.asgitypes import ASGIApp, Message, Receive, Scope, Send
from upstreams.models import Outcome

logger = logging.getLogger("gateway.shutdown")

# Theory of operation. Daphne's own shutdown loses streams: Twisted's SIGTERM handler calls
# reactor.stop() at once, and daphne's "before shutdown" trigger (Server.kill_all_applications)
# cancels every application instance. Django's ASGIHandler runs the view in an inner task that
# this cancel never reaches (asyncio.wait does not cancel what it waits for), so the stream dies
# with the event loop, the client gets a cut body and the audit row is never written. Instead:
#
# 1. ShutdownMiddleware wraps the whole ASGI app: it counts HTTP requests in flight, answers new
#    ones 503 shutting_down while draining, and hands a request `http.disconnect` once cut.
# 2. Once the reactor runs (Twisted installs its handlers in the "during startup" phase;
#    callWhenRunning runs after), Twisted's SIGTERM/SIGINT handlers are replaced. The first
#    signal closes the listening sockets, waits for the requests in flight (the grace at most),
#    cuts the rest as client disconnects (their `finally` blocks close the upstream and record
#    the row), waits for bridge.audit.drain() and only then calls reactor.stop(). A second
#    signal cuts at once.


# Still answered while draining: liveness (the process is alive) and metrics (scrapers
# watch the drain). /readyz is refused, which is what takes us out of a load balancer.
ANSWERED_WHILE_DRAINING = frozenset({"/healthz", "/metrics"})
# The API paths, by the endpoint name their audit rows carry (bridge/views.py).
API_ENDPOINTS = {"/v1/responses": "responses", "/v1/chat/completions": "chat/completions", "/v1/models": "models"}
# After the grace, upstreams are closed; this long for the streams to end with an error event.
ABORT_WAIT = 2.0
# Then what is left gets a disconnect; this long for their views to unwind.
CUT_WAIT = 5.0
# At most this long for the audit rows; a database that hangs must not keep the process up.
AUDIT_WAIT = 10.0
POLL = 0.05
_DISCONNECT: Message = {"type": "http.disconnect"}


class Shutdown:
    """The drain of one process: what is in flight, whether new requests are refused, the cut."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0  # HTTP requests between scope start and the application's return
        self.task: asyncio.Task[None] | None = None  # the drain; held here, asyncio keeps tasks weakly
        self.ending: asyncio.Future[None] | None = None  # a second signal's early end, held likewise
        self._cut = asyncio.Event()

    def begin(self) -> None:
        """Refuse new requests from now on (the ones in flight carry on)."""
        self.draining = True

    def cut(self) -> None:
        """End every request still in flight, as if its client had gone."""
        self._cut.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; return False if ``timeout`` seconds passed first.

        Polls: a 50 ms lag at shutdown costs nothing, and the middleware stays a bare counter.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(POLL)
        return not self.in_flight

    async def run(self, grace: float, stop: Callable[[], None]) -> None:
        """Drain: wait for the requests in flight, cut the rest, write the audit rows, then ``stop()``."""
        try:
            self.begin()
            logger.warning("shutting down: %d request(s) in flight, grace %.0fs", self.in_flight, grace)
            if not await self.wait_idle(grace):
                logger.warning("grace over: ending %d request(s) still in flight", self.in_flight)
                await self.end_in_flight()
            try:
                # shield: a timeout must not cancel the rows being written.
                await asyncio.wait_for(asyncio.shield(audit.drain()), AUDIT_WAIT)
            except TimeoutError:
                logger.error("audit rows still unwritten after %.0fs; exiting anyway", AUDIT_WAIT)
            logger.warning("shutdown drained: exiting")
        finally:
            stop()

    async def end_in_flight(self) -> None:
        """End what is still in flight, properly where possible.

        Closing the upstreams first lets every stream end with ``response.failed``
        (code shutting_down) or an ``error`` line, never with silence; whatever is still
        running after that (a view not reading an upstream) is cut as a disconnect.
        """
        await upstream_io.abort_all()
        if not await self.wait_idle(ABORT_WAIT):
            self.cut()
            await self.wait_idle(CUT_WAIT)

    def receive_until_cut(self, receive: Receive) -> Receive:
        """Return ``receive``, answering ``http.disconnect`` once the drain is cut.

        A disconnect is the one ending Django handles cleanly: it cancels the view's task,
        whose ``finally`` blocks close the upstream and record the audit row.
        """

        async def receive_or_disconnect() -> Message:
            if self._cut.is_set():
                return dict(_DISCONNECT)
            message = asyncio.ensure_future(receive())
            cut = asyncio.ensure_future(self._cut.wait())
            try:
                await asyncio.wait((message, cut), return_when=asyncio.FIRST_COMPLETED)
            finally:
                cut.cancel()
                if not message.done():
                    message.cancel()
            if message.done() and not message.cancelled():
                return message.result()
            return dict(_DISCONNECT)

        return receive_or_disconnect


class ShutdownMiddleware:
    """ASGI middleware: count HTTP requests in flight, refuse new ones while draining."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app = app
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.shutdown.draining and scope["path"] not in ANSWERED_WHILE_DRAINING:
            return await refuse(scope, send)
        self.shutdown.in_flight += 1
        try:
            await self.app(scope, self.shutdown.receive_until_cut(receive), send)
        finally:
            self.shutdown.in_flight -= 1


async def refuse(scope: Scope, send: Send) -> None:
    """Answer 503 ``shutting_down``; an API request also gets its audit row (outcome rejected).

    Only keep-alive connections opened before the drain get here: the listening socket is
    closed, so new connections are refused by the kernel.
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    request_id = audit.request_id_for(headers.get("x-request-id", ""))
    error = GatewayError("The gateway is shutting down; retry the request.", code="shutting_down", status=503)
    body = orjson.dumps(error.to_dict())
    endpoint = API_ENDPOINTS.get(scope["path"].rstrip("/"))
    if endpoint:
        length = headers.get("content-length", "0")
        client = scope.get("client") or (None, None)
        exchange = audit.Exchange(request_id=request_id, endpoint=endpoint, client_ip=client[0],
                                  request_bytes=int(length) if length.isdigit() else 0)
        exchange.status, exchange.response_bytes = error.status, len(body)
        exchange.fail(error, outcome=Outcome.REJECTED)
        exchange.record()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


SHUTDOWN = Shutdown()  # this process's drain; SHUTDOWN.in_flight is the count of requests in flight


def graceful(app: ASGIApp) -> ShutdownMiddleware:
    """Wrap the gateway's ASGI application and, under daphne, take over SIGTERM once the reactor runs."""
    if "daphne.server" in sys.modules:  # daphne installed the asyncio reactor: importing it is safe
        from twisted.internet import reactor

        reactor.callWhenRunning(_take_over_signals, reactor, SHUTDOWN)
    return ShutdownMiddleware(app, SHUTDOWN)


def _take_over_signals(reactor: Any, shutdown: Shutdown) -> None:
    """Replace Twisted's SIGTERM/SIGINT handlers with the drain, where Twisted installed them.

    Only Twisted's own handlers are replaced: daphne's runserver with the autoreloader
    runs the reactor in a thread without signal handlers, and a debugger's SIGINT stays.
    """

    def on_signal(number: int, frame: FrameType | None) -> None:
        # Signal handlers run between bytecodes: hand over to the reactor's thread.
        reactor.callFromThread(_signalled, reactor, shutdown, number)

    for number, twisted_handler in ((signal.SIGTERM, reactor.sigTerm), (signal.SIGINT, reactor.sigInt)):
        if signal.getsignal(number) == twisted_handler:
            signal.signal(number, on_signal)


def _signalled(reactor: Any, shutdown: Shutdown, number: int) -> None:
    name = signal.Signals(number).name
    if shutdown.draining:
        logger.warning("%s again: ending the %d request(s) in flight now", name, shutdown.in_flight)
        shutdown.ending = asyncio.ensure_future(shutdown.end_in_flight())
        return
    logger.warning("%s received", name)
    shutdown.begin()
    _stop_listening(reactor)
    shutdown.task = asyncio.ensure_future(shutdown.run(settings.GATEWAY_SHUTDOWN_GRACE, lambda: _stop(reactor)))


def _stop(reactor: Any) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:  # something else stopped it meanwhile
        pass


def _stop_listening(reactor: Any) -> None:
    """Close daphne's listening sockets, so new connections are refused rather than queued."""
    from twisted.internet.interfaces import IListeningPort

    for reader in reactor.getReaders():
        if IListeningPort.providedBy(reader):
            reader.stopListening()
