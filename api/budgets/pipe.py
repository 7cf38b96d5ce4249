"""The ledger's Redis: its scripts run on one connection per process, pipelined, on the event loop.

Why not redis-py: every request's budget is a round trip to Redis, and on the 2-core machine
we measure on a round trip through redis-py costs 156 µs of CPU called inline (blocking the
loop), 390 µs through the thread pool the shared cache uses (plumbing/sharedstate.py), 209 µs
with redis.asyncio and 285 µs for a pipeline of two; an asyncio Protocol writing the commands
itself, with hiredis reading the replies, costs 121 µs (bench scripts of 2026-12-07, 5,000
calls each). So: one connection, commands written as RESP and answered in order (a FIFO of
futures), and the commands of one loop turn sent in one write; a settle waits up to
``SETTLE_DELAY`` for a request's check to ride with, so a busy process pays about one
round trip per request. Scripts go by EVALSHA, and again by EVAL when Redis says NOSCRIPT
(it restarted).

It fails as the shared cache does: a reply later than GATEWAY_REDIS_TIMEOUT, or a broken
connection, fails every command waiting and opens the shared cache's breaker, so the next
calls fail at once (``SharedStateUnavailable``) until it lets one try again.
"""
from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from django.conf import settings

from plumbing.sharedstate import BREAKER, SharedStateUnavailable

SETTLE_DELAY = 0.002  # seconds a settle waits for a check to share its write with


class RedisReplyError(RuntimeError):
    """Redis answered a command with an error (a script's bug, a wrong type)."""


def encode(*args: str | bytes | int) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(part), part) for part in parts)


class Script:
    """A Lua script run by its SHA1 (EVALSHA), or whole (EVAL) when Redis does not have it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    def command(self, keys: list[str], args: list[Any], *, whole: bool = False) -> bytes:
        head: list[str | bytes | int] = ["EVAL", self.source] if whole else ["EVALSHA", self.sha]
        return encode(*head, len(keys), *keys, *args)


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.reader = hiredis.Reader(replyError=RedisReplyError)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.pipe.answered(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.broken(ConnectionError("the Redis connection was closed"))


class Pipe:
    """One pipelined connection to ``url`` (redis:// or rediss://, with a user, password and database)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Future[None] | None = None
        # Commands written and not yet answered, oldest first, each with when it was written (loop time).
        self.waiting: deque[tuple[asyncio.Future[Any], Script | None, list[Any], float]] = deque()
        self.queued: list[tuple[bytes, asyncio.Future[Any], Script | None, list[Any]]] = []
        self.flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None

    async def run(self, script: Script, keys: list[str], args: list[Any], *, soon: bool = True) -> Any:
        """Run ``script`` and return its reply; ``soon``: sent this loop turn (else within SETTLE_DELAY)."""
        return await self._ask(script.command(keys, args), script, [keys, args], soon=soon)

    async def command(self, *args: str | bytes | int) -> Any:
        """A plain command (DEL...), sent this loop turn."""
        return await self._ask(encode(*args), None, [], soon=True)

    async def _ask(self, data: bytes, script: Script | None, call: list[Any], *, soon: bool) -> Any:
        """Send one command through the shared cache's breaker: refused at once while it is open."""
        if not BREAKER.allow():
            raise SharedStateUnavailable("Redis failed a moment ago")
        if self.transport is None:
            await self._connect()
        try:
            reply = await self._queue(data, script, call, soon=soon)
        except (ConnectionError, TimeoutError, OSError) as exc:
            BREAKER.failed(exc)
            raise
        BREAKER.succeeded()
        return reply

    def _queue(self, data: bytes, script: Script | None, call: list[Any], *, soon: bool) -> asyncio.Future[Any]:
        """Queue a command for the next write (this loop turn, or within SETTLE_DELAY); its reply's future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queued.append((data, future, script, call))
        if soon or self.flush_handle is None:
            if self.flush_handle is not None:
                self.flush_handle.cancel()
            self.flush_handle = (loop.call_soon(self._flush) if soon else loop.call_later(SETTLE_DELAY, self._flush))
        return future

    def _flush(self) -> None:
        self.flush_handle = None
        if not self.queued or self.transport is None:
            return
        batch, self.queued = self.queued, []
        self.transport.write(b"".join(command for command, _, _, _ in batch))
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.waiting.extend((future, script, call, now) for _, future, script, call in batch)
        if self.deadline is None:  # one watchdog while anything waits, not a timer per write
            self.deadline = loop.call_later(settings.GATEWAY_REDIS_TIMEOUT, self._watch)

    def answered(self, reply: Any) -> None:
        future, script, call, sent = self.waiting.popleft()
        if isinstance(reply, RedisReplyError) and script is not None and str(reply).startswith("NOSCRIPT"):
            assert self.transport is not None  # Redis restarted: send the script whole, answered in its turn
            self.transport.write(script.command(*call, whole=True))
            self.waiting.append((future, None, call, sent))
            return
        if not future.done():
            if isinstance(reply, RedisReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _watch(self) -> None:
        """Fail what waits when its oldest command has waited GATEWAY_REDIS_TIMEOUT; else look again then."""
        self.deadline = None
        if not self.waiting:
            return
        loop, timeout = asyncio.get_running_loop(), settings.GATEWAY_REDIS_TIMEOUT
        oldest = self.waiting[0][3]
        if loop.time() - oldest < timeout:
            self.deadline = loop.call_at(oldest + timeout, self._watch)
            return
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails what waits
        self.broken(TimeoutError(f"Redis did not answer within {timeout} s"))

    def broken(self, exc: Exception) -> None:
        """Fail every command sent or queued, and forget the connection (the next call reconnects)."""
        self.transport = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        pending = [future for future, _, _, _ in self.waiting] + [future for _, future, _, _ in self.queued]
        self.waiting.clear()
        self.queued.clear()
        for future in pending:
            if not future.done():
                future.set_exception(exc)

    async def _connect(self) -> None:
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._open())
        connecting = self.connecting
        try:
            await asyncio.shield(connecting)
        except Exception as exc:
            BREAKER.failed(exc)
            raise
        finally:
            if self.connecting is connecting and connecting.done():
                self.connecting = None

    async def _open(self) -> None:
        parts = urlsplit(self.url)
        loop = asyncio.get_running_loop()
        tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), parts.hostname or "127.0.0.1", parts.port or 6379,
                                   ssl=tls), settings.GATEWAY_REDIS_TIMEOUT * 10)
        self.transport = transport
        hello: list[tuple[str | bytes | int, ...]] = []
        if parts.password:
            hello.append(("AUTH", unquote(parts.username or "default"), unquote(parts.password)))
        database = parts.path.strip("/")
        if database and database != "0":
            hello.append(("SELECT", database))
        for command in hello:  # past the breaker: this is the call it let through, connecting
            said = self._queue(encode(*command), None, [], soon=True)
            await asyncio.wait_for(said, settings.GATEWAY_REDIS_TIMEOUT * 10)
