"""The one pipeline: an upstream's answer, read into what a client receives.

A ``Translation`` reads an answer of another dialect (the Chat bridge) into UpstreamEvents
and turns them into the Responses events of ``ResponseStream``; a ``Relay`` passes an answer
of the client's own API on byte for byte, with a ``StreamTap`` watching it. Each of them:

- yields what the client is sent, ``chunks()`` (bytes) or ``events()`` (the Responses
  events of the client's response: a background response's, numbered from its own start);
- ends in a terminal event, a stream that broke included (``response.failed``, or a Chat
  ``error`` line), and says how in its ``Ending`` (the answer's, api/http/answers.py);
- keeps the finished response (its ``Keeper``) before the part that holds its terminal
  event is yielded, so that a follow-up sent the moment it arrives finds it;
- tells its ``Progress`` (the request's Exchange) the first byte, the usage and the tool
  calls, and closes the upstream's answer however it ends.

Its consumers are thin: the HTTP answer (api/pipeline/foreground.py), the background run
(api/background/run.py), the replay of a recording (api/replay.py); a Responses WebSocket
is answered through the HTTP API (api/socket.py). A new kind of answer is a new consumer.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol

import httpx

from api.pipeline import client
from api.pipeline.plan import Reply
from api.pipeline.silence import SILENCE
from api.stored.keeper import Keeper
from bridge import background as protocol
from bridge.errors import BridgeError, GatewayError, ShuttingDownError, UpstreamError, UpstreamTimeoutError
from bridge.events import UpstreamEvent, UsageReported
from bridge.sse import encode_event
from bridge.stream import TERMINAL, Phase, ResponseStream
from bridge.tap import StreamTap, failure_trailer
from logs.audit.exchange import Ending
from plumbing.shutdown import SHUTDOWN

logger = logging.getLogger("gateway")
Batch = list[dict[str, Any]]
SHUTTING_DOWN = ShuttingDownError().message
INCOMPLETE = "The upstream stream ended before it was complete."


class Progress(Protocol):
    """What a pipeline tells as it goes: the request's Exchange, or a replay's stand-in (api/replay.py)."""

    request_id: str
    usage: UsageReported | None
    tool_calls: int

    def mark_first_byte(self) -> None: ...


def encode_events(events: Batch) -> bytes:
    return b"".join(encode_event(e) for e in events)


def why_it_broke(response: httpx.Response | None, exc: BridgeError) -> BridgeError:
    """Return the error to report for a stream that broke: ours if the drain closed it, a timeout if it fell silent."""
    if response is None:
        return exc
    if SHUTDOWN.aborted(response):
        return ShuttingDownError()
    limit = SILENCE.silenced(response)
    if limit is not None:
        return UpstreamTimeoutError(f"The upstream sent nothing for {limit:g} s mid-answer (its read_timeout).")
    return exc


class Pipeline:
    """What both pipelines share: who is told, what is kept, how it ended."""

    def __init__(self, keeper: Keeper | None, progress: Progress, ending: Ending) -> None:
        self.keeper, self.progress, self.ending = keeper, progress, ending

    async def _kept(self, batch: Batch, response: dict[str, Any] | None) -> Batch:
        """Return ``batch``, once the finished ``response`` is kept when it is the last (its terminal event)."""
        if self.keeper is not None and response is not None:
            await self.keeper.keep(response, batch)
        return batch

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def events(self) -> AsyncIterator[Batch]:
        raise NotImplementedError

    async def stop(self, *, cancelled: bool) -> Batch:
        """End a background response early (cancelled by its client, or cut by the drain): its last events, kept."""
        raise NotImplementedError

    def beat(self) -> bytes:
        """What a client waiting on a silent upstream is sent to know the answer is alive (b"": nothing)."""
        raise NotImplementedError

    @property
    def response(self) -> dict[str, Any] | None:
        """The client's Response object as it ended (None when a relayed answer never showed one)."""
        raise NotImplementedError


class Translation(Pipeline):
    """An answer of another dialect, read into UpstreamEvents and translated by ``ResponseStream``.

    ``source`` yields the events batch by batch (one network read's together); ``upstream`` is
    the answer they are read from, closed at the end (None: events the gateway makes itself).
    """

    def __init__(self, machine: ResponseStream, source: AsyncIterator[list[UpstreamEvent]],
                 upstream: httpx.Response | None, keeper: Keeper | None, progress: Progress, ending: Ending) -> None:
        super().__init__(keeper, progress, ending)
        self.machine, self.source, self.upstream = machine, source, upstream

    @property
    def response(self) -> dict[str, Any]:
        return self.machine.response

    @property
    def failed(self) -> bool:
        return self.machine.phase is Phase.FAILED

    async def chunks(self) -> AsyncGenerator[bytes]:
        # Closed with this generator (a client that left): the usage is told and the upstream closed at once.
        async with aclosing(self.events()) as events:
            async for batch in events:
                yield encode_events(batch)

    async def events(self) -> AsyncGenerator[Batch]:
        """Yield the Responses events, batch by batch; they always end in a terminal event."""
        machine = self.machine
        try:
            yield machine.start()
            try:
                with client.mapped_errors():
                    async for batch in self.source:
                        self.progress.mark_first_byte()
                        out = self._fed(batch)
                        if machine.phase in TERMINAL:
                            yield await self._done(out)
                            break
                        if out:  # not the end: nothing to keep yet
                            yield out
                if machine.phase not in TERMINAL:
                    yield await self._done(machine.finish())
            except UpstreamError as error:
                exc = why_it_broke(self.upstream, error)
                self.ending.fail(exc)
                yield await self._done(machine.fail(exc.code or "upstream_error", exc.message))
            except Exception as exc:  # a bug of ours: still end the stream properly
                logger.exception("bridge failed on request %s", self.progress.request_id)
                yield await self._done(machine.fail("internal_error", f"The gateway failed ({type(exc).__name__})."))
                self.ending.fail(GatewayError(f"bridge failed: {type(exc).__name__}"))
                return
            self._settle()
        finally:
            self.progress.usage = machine.reported_usage
            self.progress.tool_calls = machine.tool_call_count
            if self.upstream is not None:
                await self.upstream.aclose()

    async def whole(self) -> dict[str, Any]:
        """Read the answer to its end for a client that asked for one JSON object; raise its error if it failed."""
        async for _ in self.events():
            pass
        if self.failed:
            assert self.ending.error is not None
            raise self.ending.error
        return self.response

    def _fed(self, batch: list[UpstreamEvent]) -> Batch:
        out: Batch = []
        for event in batch:
            out += self.machine.feed(event)
            if self.machine.phase in TERMINAL:
                break
        return out

    async def _done(self, events: Batch) -> Batch:
        return await self._kept(events, self.machine.response if self.machine.phase in TERMINAL else None)

    def _settle(self) -> None:
        if self.machine.phase is not Phase.FAILED:
            self.ending.complete()
        elif self.ending.error is None:  # failed by the upstream's own error chunk
            reported = self.machine.response["error"]
            self.ending.fail(UpstreamError(reported["message"], code=reported["code"]))

    def beat(self) -> bytes:
        """A ``response.in_progress`` (the Response as it stands, numbered next): an event, which Codex counts."""
        return encode_events(self.machine.heartbeat())

    async def stop(self, *, cancelled: bool) -> Batch:
        if (self.keeper is not None and self.keeper.kept) or self.machine.phase in TERMINAL:
            return []
        machine = self.machine
        last = machine.cancel() if cancelled else machine.fail("shutting_down", SHUTTING_DOWN)
        return await self._kept(last, machine.response)


class Relay(Pipeline):
    """An answer of the client's own API, passed on as it came (``chunks``) or renumbered as the client's (``events``).

    ``first()`` reads the first part before the answer's headers go out, so that an upstream
    failing at once is answered with its error rather than a broken stream; a JSON answer to
    be kept is read whole, and kept before any of it leaves. With ``opening`` (the events a
    background response was opened with), ``events()`` gives the upstream's events as that
    response's: its id, and sequence numbers that go on from the opening's.
    """

    def __init__(self, reply: Reply, keeper: Keeper | None, progress: Progress, ending: Ending,
                 opening: Batch | None = None) -> None:
        super().__init__(keeper, progress, ending)
        self.reply = reply
        self.upstream = reply.response
        self.tap = StreamTap(reply.dialect.wire, sse=client.is_event_stream(self.upstream),
                             strip_usage=reply.sent.usage_added)
        self.renumbered = protocol.RelayedEvents(opening, keeper.applied if keeper else {}) if opening else None
        self._reads = self.upstream.aiter_raw()
        self._first = b""

    @property
    def response(self) -> dict[str, Any] | None:
        return self.renumbered.response if self.renumbered is not None else self.tap.final_response

    async def first(self) -> None:
        """Read the first part of the answer (a JSON answer to be kept: all of it), mapping a failure to its error."""
        try:
            with client.mapped_errors(self.reply.upstream):
                self._first = await anext(self._reads, b"")
                if self.keeper is not None and not self.tap.sse:
                    self._first += b"".join([chunk async for chunk in self._reads])
        except BaseException:
            await self.upstream.aclose()
            raise
        self.progress.mark_first_byte()

    async def chunks(self) -> AsyncGenerator[bytes]:
        """Yield the upstream's bytes as they come; end a broken stream with an error the client can read."""
        tap, keeper = self.tap, self.keeper
        try:
            chunk = self._first
            try:
                with client.mapped_errors():
                    while chunk:
                        if tap.inserted:  # heartbeats went in: the upstream's events are renumbered after them
                            chunk = tap.shifted(chunk)
                        elif tap.strip_usage:  # the usage the gateway asked for is not the client's
                            chunk = tap.without_usage(chunk)
                        else:
                            tap.feed(chunk)
                        if keeper is not None:  # kept before the read that holds its end leaves
                            await self._keep_when_final()
                        if chunk:
                            yield chunk
                        chunk = await anext(self._reads, b"")
                tail = tap.close()
                if tail:
                    yield tail
                self._settle(tap.complete, tap.error)
            except UpstreamError as error:
                exc = why_it_broke(self.upstream, error)
                self.ending.fail(exc)
                if tap.sse:
                    yield failure_trailer(tap, exc.code or "upstream_error", exc.message)
        finally:
            await self._end()

    async def _keep_when_final(self) -> None:
        """Keep the finished Response once the tap has seen it (a JSON answer: read whole, so at once)."""
        if not self.tap.sse:
            self.tap.close()
        if self.keeper is not None and self.tap.final_response is not None:
            await self.keeper.keep(self.tap.final_response)

    async def events(self) -> AsyncGenerator[Batch]:
        """Yield the upstream's events as the background response's, batch by batch, ending in a terminal one."""
        renumbered = self.renumbered
        assert renumbered is not None
        try:
            try:
                with client.mapped_errors(self.reply.upstream):
                    async for batch in self._renumbered():
                        yield batch
                if not self.tap.sse:  # a whole JSON answer: answered as it stands
                    self.ending.complete()
                    return
                if not renumbered.done:
                    raise UpstreamError(INCOMPLETE, code="upstream_protocol_error")
                error = renumbered.response.get("error")
                if renumbered.response.get("status") == "failed" and isinstance(error, dict):
                    self.ending.fail(UpstreamError(str(error.get("message", "")),
                                                   code=str(error.get("code") or "upstream_error")))
                else:
                    self.ending.complete()
            except UpstreamError as error:
                exc = why_it_broke(self.upstream, error)
                self.ending.fail(exc)
                yield await self._kept([renumbered.failed(exc.code or "upstream_error", exc.message)],
                                       renumbered.response)
        finally:
            await self._end()

    async def _renumbered(self) -> AsyncGenerator[Batch]:
        renumbered, tap = self.renumbered, self.tap
        assert renumbered is not None
        if not tap.sse:  # an upstream that ignored `stream`: its whole answer is the last event
            tap.feed(await self.upstream.aread())
            tap.close()
            taken = renumbered.take(protocol.ending(tap.final_response or {}, renumbered.sequence_number))
            yield await self._kept([taken] if taken else [], renumbered.response)
            return
        async for chunk in self._reads:
            self.progress.mark_first_byte()
            batch = [event for event in map(renumbered.take, tap.events(chunk)) if event]
            if renumbered.done:
                yield await self._kept(batch, renumbered.response)
                return
            if batch:
                yield batch

    def _settle(self, complete: bool, error: dict[str, Any] | None) -> None:
        if not complete:
            raise UpstreamError(INCOMPLETE, code="upstream_protocol_error")
        if error:
            code = str(error.get("code") or error.get("type") or "upstream_error")
            self.ending.fail(UpstreamError(str(error.get("message", "")), code=code))
        else:
            self.ending.complete()

    async def _end(self) -> None:
        self.progress.usage, self.progress.tool_calls = self.tap.usage, self.tap.tool_calls
        await self.upstream.aclose()

    def beat(self) -> bytes:
        """The tap's heartbeat: between two events only; on a Responses stream it renumbers what follows."""
        return self.tap.heartbeat()

    async def stop(self, *, cancelled: bool) -> Batch:
        if (self.keeper is not None and self.keeper.kept) or self.renumbered is None:
            return []
        renumbered = self.renumbered
        last = [renumbered.cancelled() if cancelled else renumbered.failed("shutting_down", SHUTTING_DOWN)]
        return await self._kept(last, renumbered.response)


def pipeline_for(reply: Reply, asked: dict[str, Any], keeper: Keeper | None, progress: Progress,
                 ending: Ending, opening: Batch | None = None) -> Translation | Relay:
    """Return the pipeline for an answer: translated when its dialect translates, relayed otherwise.

    ``asked`` is what the client sent (the Response object echoes it; the upstream was sent the
    routed request); ``opening``: the events a background response was opened with.
    """
    dialect = reply.dialect
    if dialect.read_body is None:
        return Relay(reply, keeper, progress, ending, opening)
    sent = reply.sent
    queued = opening[-1]["response"] if opening else None
    machine = ResponseStream(model=asked["model"], tools=sent.tools, unsent=sent.unsent, request=asked,
                             created_at=queued["created_at"] if queued else time.time(), clock=time.time,
                             response_id=queued["id"] if queued else None)
    if opening:
        machine.queued_as(opening)
    source = client.read_events(reply.response, dialect.reader(), dialect.read_body)
    return Translation(machine, source, reply.response, keeper, progress, ending)
