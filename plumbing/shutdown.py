"""Graceful shutdown: on SIGTERM, finish in-flight requests, write their audit rows, then exit.

The drain lives here: the count of requests in flight, the refusal of new ones, the
upstream answers to close when the grace is over, the order of the steps. The API hands
over what it must (``track`` its upstream answers, ``flush`` its audit rows) through
``graceful()``, called by ``gatewaysite/asgi.py``; under daphne, plumbing/patches/signals.py
starts ``run()`` on the first SIGTERM. The grace is GATEWAY_SHUTDOWN_GRACE.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from bridge.errors import ShuttingDownError
from plumbing.asgitypes import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.shutdown")

# Theory of operation. Daphne's own shutdown loses streams: Twisted's SIGTERM handler calls
# reactor.stop() at once, and daphne's "before shutdown" trigger (Server.kill_all_applications)
# cancels every application instance. Django's ASGIHandler runs the view in an inner task that
# this cancel never reaches (asyncio.wait does not cancel what it waits for), so the stream dies
# with the event loop, the client gets a cut body and the audit row is never written. Instead:
#
# 1. ShutdownMiddleware wraps the whole ASGI app: it counts HTTP requests in flight, answers new
#    ones 503 shutting_down while draining, and hands a request `http.disconnect` once cut.
# 2. Once the reactor runs, Twisted's SIGTERM/SIGINT handlers are replaced (plumbing/patches/signals.py).
#    The first signal closes the listening sockets and calls ``Shutdown.run``: it waits for the
#    requests in flight (the grace at most), cuts the rest as client disconnects (their `finally`
#    blocks close the upstream and record the row), waits for the audit rows (``flush``) and only
#    then stops the reactor. A second signal cuts at once (``end_in_flight``).


# Still answered while draining: liveness (the process is alive) and metrics (scrapers
# watch the drain). /readyz is refused, which is what takes us out of a load balancer.
ANSWERED_WHILE_DRAINING = frozenset({"/healthz", "/metrics"})
# After the grace, upstreams are closed; this long for the streams to end with an error event.
ABORT_WAIT = 2.0
# Then what is left gets a disconnect; this long for their views to unwind.
CUT_WAIT = 5.0
# At most this long for the audit rows; a database that hangs must not keep the process up.
AUDIT_WAIT = 10.0
POLL = 0.05
_DISCONNECT: Message = {"type": "http.disconnect"}


class Closeable(Protocol):
    """An upstream answer still being read (an ``httpx.Response``)."""

    @property
    def is_closed(self) -> bool: ...

    async def aclose(self) -> None: ...


async def _nothing_to_flush() -> None:
    return None


class Shutdown:
    """The drain of one process: what is in flight, whether new requests are refused, the cut."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0  # HTTP requests between scope start and the application's return
        self.task: asyncio.Task[None] | None = None  # the drain; held here, asyncio keeps tasks weakly
        self.ending: asyncio.Future[None] | None = None  # a second signal's early end, held likewise
        self.flush: Callable[[], Awaitable[None]] = _nothing_to_flush  # writes what is pending (audit rows)
        self._cut = asyncio.Event()
        self._draining = asyncio.Event()
        self._open: weakref.WeakSet[Closeable] = weakref.WeakSet()  # upstream answers still being read
        self._aborted: weakref.WeakSet[Closeable] = weakref.WeakSet()

    def track(self, answer: Closeable) -> None:
        """Keep ``answer`` to close if it is still open when the grace is over."""
        self._open.add(answer)

    def aborted(self, answer: Closeable) -> bool:
        """Whether the drain closed ``answer``: a stream that broke then failed because of us, not the upstream."""
        return answer in self._aborted

    async def abort_all(self) -> int:
        """Close every upstream answer still open; their readers then end their streams properly.

        A reader whose upstream is closed under it gets a read error, which the relay turns
        into ``response.failed`` / an ``error`` line, where a cancelled task could only stop sending.
        """
        count = 0
        for answer in list(self._open):
            if not answer.is_closed:
                self._aborted.add(answer)
                await answer.aclose()
                count += 1
        return count

    def begin(self) -> None:
        """Refuse new requests from now on (the ones in flight carry on)."""
        self.draining = True
        self._draining.set()

    async def until_draining(self) -> None:
        """Return once the drain has begun (a Responses WebSocket then closes when it is idle)."""
        await self._draining.wait()

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
                await asyncio.wait_for(asyncio.shield(self.flush()), AUDIT_WAIT)
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
        await self.abort_all()
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
    """ASGI middleware: count HTTP requests in flight, refuse new ones while draining.

    ``refuses_itself(scope)`` names the requests whose app answers its own refusal: the
    API does, so that a refused API request still leaves its audit row.
    """

    def __init__(self, app: ASGIApp, shutdown: Shutdown,
                 refuses_itself: Callable[[Scope], bool] = lambda scope: False) -> None:
        self.app = app
        self.shutdown = shutdown
        self.refuses_itself = refuses_itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.shutdown.draining and scope["path"] not in ANSWERED_WHILE_DRAINING and not self.refuses_itself(scope):
            return await refuse(send)
        self.shutdown.in_flight += 1
        try:
            await self.app(scope, self.shutdown.receive_until_cut(receive), send)
        finally:
            self.shutdown.in_flight -= 1


async def refuse(send: Send) -> None:
    """Answer 503 ``shutting_down`` (admin, request log, readyz: no audit row).

    Only keep-alive connections opened before the drain get here: the listening socket is
    closed, so new connections are refused by the kernel.
    """
    error = ShuttingDownError()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": orjson.dumps(error.to_dict())})


SHUTDOWN = Shutdown()  # this process's drain; SHUTDOWN.in_flight is the count of requests in flight


def graceful(app: ASGIApp, *, flush: Callable[[], Awaitable[None]],
             refuses_itself: Callable[[Scope], bool]) -> ShutdownMiddleware:
    """Wrap the gateway's ASGI application in the drain; ``flush`` writes what must not be lost (the audit rows).

    Under daphne, SIGTERM starts the drain through plumbing/patches/signals.py.
    """
    SHUTDOWN.flush = flush
    return ShutdownMiddleware(app, SHUTDOWN, refuses_itself)
