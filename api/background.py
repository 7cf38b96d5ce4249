"""Background responses (``background: true``): answered by a task of the process that took them, watched from any.

``start`` writes the response as queued, hands the request to a task of this process
(a ``Run``) and answers at once: the queued Response, or with ``stream`` the live stream.
The run asks the upstream (with failover) and answers whether or not the client stays;
its audit row is written when it is over. Anyone holding the key may then watch it:

- ``GET /v1/responses/{id}`` reads the row (queued, in_progress, then the finished object);
- ``GET /v1/responses/{id}?stream=true&starting_after=N`` (``resume``): from the run
  itself in this process; from another, through the channel layer (Redis, with
  REDIS_URL): it asks the running process's inbox to forward the events after N, and
  that process sends what it has and then each batch as it comes, so nothing is missed
  or sent twice. Once the run is over, its events are read from the row, where they were
  stored before the last of them went anywhere;
- ``cancel``: the run's task is cancelled, here or through the inbox of its process.

Each process beats (its live rows' ``heartbeat``) every GATEWAY_BACKGROUND_HEARTBEAT
seconds. A live row whose heartbeat is three beats old belongs to a process that died
(SIGKILL, a crash): it is marked failed by whoever finds it (any process's beat, a poll,
a resume, a cancel), so no response stays ``in_progress`` forever.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpResponseBase, JsonResponse
from django.utils.timezone import now

from api import client, relay
from api.decorators import ApiRequest
from api.relay import Ending, Plan
from api.stored import Keeper
from api.streams import ClosingStream
from bridge import background as protocol
from bridge.errors import (
    BridgeError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    ShuttingDownError,
    UpstreamError,
)
from bridge.sse import SSEDecoder, encode_event
from bridge.stream import TERMINAL, ResponseStream, stream_error
from bridge.tap import StreamTap
from logs.audit.exchange import Exchange
from logs.models import Outcome
from plumbing import dbthread, metrics
from state.models import ResponseToStore, StoredResponse
from upstreams.models import ClientKey

logger = logging.getLogger("gateway")
STALE_BEATS = 3  # a live row this many heartbeats old has lost its process
CANCEL_WAIT = 5.0  # seconds a cancel waits for another process to confirm
WATCH_IDLE = 5.0  # seconds without an event before a remote watcher checks the row again
Batch = list[dict[str, Any]]
SHUTTING_DOWN = ShuttingDownError().message


@dataclass(eq=False)
class Run:
    """One background response being answered in this process: its events so far and who watches them."""

    id: str
    events: Batch = field(default_factory=list)
    watchers: list[asyncio.Queue[Batch | None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    cancelling: bool = False  # cancelled by its client, not by the shutdown
    over: bool = False

    def publish(self, batch: Batch) -> None:
        self.events += batch
        for queue in self.watchers:
            queue.put_nowait(batch)

    def watch(self, starting_after: int | None) -> asyncio.Queue[Batch | None]:
        """Return a queue that gets the events after ``starting_after``, then each batch, then None at the end."""
        queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        backlog = protocol.after(self.events, starting_after)
        if backlog:
            queue.put_nowait(backlog)
        if self.over:
            queue.put_nowait(None)
        else:
            self.watchers.append(queue)
        return queue

    def end(self) -> None:
        self.over = True
        for queue in self.watchers:
            queue.put_nowait(None)
        self.watchers.clear()


RUNS: dict[str, Run] = {}


class Inbox:
    """This process's channel for its runs' watchers and cancels in other processes, and its heartbeat."""

    def __init__(self) -> None:
        self.channel = ""
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> str:
        """Return this process's channel, listening on it (and beating) from the first call on."""
        if not self.channel:
            self.channel = await get_channel_layer().new_channel("background.")
            loop = asyncio.get_running_loop()
            self.tasks = [loop.create_task(self._serve()), loop.create_task(self._beat())]
        return self.channel

    async def _serve(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background inbox: the channel layer failed; listening again in 1 s")
                await asyncio.sleep(1.0)
                continue
            run = RUNS.get(str(message.get("id")))
            reply = str(message.get("reply", ""))
            if message.get("type") == "background.watch":
                asyncio.get_running_loop().create_task(_forward(run, message.get("after"), reply))
            elif message.get("type") == "background.cancel":
                asyncio.get_running_loop().create_task(_cancel_for(run, reply))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(_heartbeat())
            try:
                if RUNS:
                    await dbthread.run(StoredResponse.objects.beat, self.channel)
                lost = await dbthread.run(StoredResponse.objects.lose, _stale_before())
                if lost:
                    logger.warning("background responses lost with their process, marked failed: %s", lost)
            except Exception:
                logger.exception("background heartbeat failed")


INBOX = Inbox()


def _heartbeat() -> float:
    return float(settings.GATEWAY_BACKGROUND_HEARTBEAT)


def _stale_before() -> Any:
    return now() - timedelta(seconds=_heartbeat() * STALE_BEATS)


async def start(request: ApiRequest, body: dict[str, Any], plan: Plan) -> HttpResponseBase:
    """Queue a background response, start its run, and answer: the queued Response, or the live stream."""
    keeper = plan.keeper
    assert keeper is not None and keeper.background
    refused = relay.refusal(plan.routes, body)
    if refused is not None:  # told now, not after a 200 (queued)
        raise refused
    runner = await INBOX.open()
    queuer = ResponseStream(model=body["model"], request=body, response_id=f"resp_{uuid.uuid4().hex}",
                            created_at=time.time(), clock=time.time)
    opening = queuer.queue()
    queued = {**queuer.response, **keeper.applied}
    for event in opening:
        event["response"] = queued
    await dbthread.run(StoredResponse.objects.queue, ResponseToStore(
        queued, keeper.key, keeper.previous, keeper.inputs, keeper.request_id), runner)
    run = RUNS[queued["id"]] = Run(queued["id"])
    metrics.background_running.inc()
    run.publish(opening)
    keeper.events = run.events
    exchange = request.exchange
    exchange.handed_off = True
    stream = bool(body.get("stream"))
    watching = run.watch(None) if stream else None
    run.task = asyncio.get_running_loop().create_task(_answer(run, request, body, plan, opening))
    if watching is not None:
        exchange.status = 200
        return EventStream(_drain(watching), exchange, owns_row=False)
    return JsonResponse(queued)


async def _answer(run: Run, request: ApiRequest, body: dict[str, Any], plan: Plan, opening: Batch) -> None:
    """Answer the background response ``run`` from its upstream; store it, then end it, however it goes."""
    keeper, exchange = plan.keeper, request.exchange
    assert keeper is not None
    ending = Ending(outcome=None)
    queued = opening[-1]["response"]
    machine: ResponseStream | None = None
    relayed: protocol.RelayedEvents | None = None
    try:
        try:
            routed = {**plan.routed, "stream": True}  # even for a client that polls: the events are kept
            connection = await relay.connect(request, routed, plan.routes, asked=body)
            exchange.stream = bool(body.get("stream"))
        except BridgeError as exc:
            ending.fail(exc)
            relayed = protocol.RelayedEvents(opening, keeper.applied)
            await _finish(run, keeper, [relayed.failed(exc.code or "upstream_error", exc.message)], relayed.response)
            return
        await dbthread.run(StoredResponse.objects.progress, {**queued, "status": "in_progress"})
        if connection.dialect.translates:
            sent, dialect = connection.sent, connection.dialect
            assert dialect.read_chunk is not None and dialect.read_body is not None
            machine = ResponseStream(model=body["model"], tools=sent.tools, unsent=sent.unsent, request=body,
                                     created_at=queued["created_at"], clock=time.time, response_id=run.id)
            machine.queued_as(opening)
            events = client.read_events(connection.response, dialect.read_chunk, dialect.read_body)
            async with aclosing(relay.translated(machine, events, connection.response, exchange, ending,
                                                 keeper)) as batches:
                async for batch in batches:
                    run.publish(batch)
        else:
            relayed = protocol.RelayedEvents(opening, keeper.applied)
            await _relay(run, connection, relayed, keeper, exchange, ending)
    except asyncio.CancelledError:
        ending.outcome, ending.error = (Outcome.CANCELLED, None) if run.cancelling else (None, ShuttingDownError())
        if not keeper.kept:
            if machine is not None and machine.phase not in TERMINAL:
                last = machine.cancel() if run.cancelling else machine.fail("shutting_down", SHUTTING_DOWN)
                response = machine.response
            else:
                relayed = relayed or protocol.RelayedEvents(opening, keeper.applied)
                last = [relayed.cancelled() if run.cancelling else
                        relayed.failed("shutting_down", SHUTTING_DOWN)]
                response = relayed.response
            await _finish(run, keeper, last, response)
        if not run.cancelling:
            raise
    except Exception as exc:
        logger.exception("background response %s failed in the gateway", run.id)
        ending.fail(UpstreamError(f"The gateway failed ({type(exc).__name__}).", code="internal_error"))
        if not keeper.kept:
            relayed = relayed or protocol.RelayedEvents(opening, keeper.applied)
            await _finish(run, keeper, [relayed.failed("internal_error", "The gateway failed.")], relayed.response)
    finally:
        run.end()
        RUNS.pop(run.id, None)
        metrics.background_running.dec()
        exchange.finish(ending.outcome, ending.error)


async def _finish(run: Run, keeper: Keeper, last: Batch, response: dict[str, Any]) -> None:
    """Store the finished response with its whole stream, then send the stream's last events."""
    await asyncio.shield(keeper.keep(response, last))
    run.publish(last)


async def _relay(run: Run, connection: relay.Connection, relayed: protocol.RelayedEvents, keeper: Keeper,
                 exchange: Exchange, ending: Ending) -> None:
    """Publish a Responses upstream's events as the background response's (renumbered, its id)."""
    upstream_response = connection.response
    tap = StreamTap(connection.dialect.wire, sse=client.is_event_stream(upstream_response))
    decoder = SSEDecoder()
    try:
        with client.mapped_errors(connection.upstream):
            if not tap.sse:  # an upstream that ignored `stream`: its whole answer is the last event
                tap.feed(await upstream_response.aread())
                tap.close()
                taken = relayed.take(protocol.ending(tap.final_response or {}, relayed.sequence_number))
                await _finish(run, keeper, [taken] if taken else [], relayed.response)
                ending.complete()
                return
            async for chunk in upstream_response.aiter_raw():
                exchange.mark_first_byte()
                tap.feed(chunk)
                batch = [e for e in (relayed.take(event) for event in _decoded(decoder.feed(chunk))) if e]
                if relayed.done:
                    await _finish(run, keeper, batch, relayed.response)
                    break
                if batch:
                    run.publish(batch)
        if not relayed.done:
            raise UpstreamError("The upstream stream ended before it was complete.", code="upstream_protocol_error")
        error = relayed.response.get("error")
        if relayed.response.get("status") == "failed" and isinstance(error, dict):
            ending.fail(UpstreamError(str(error.get("message", "")), code=str(error.get("code") or "upstream_error")))
        else:
            ending.complete()
    except UpstreamError as error:
        exc = relay.shutdown_error(upstream_response, error)
        ending.fail(exc)
        await _finish(run, keeper, [relayed.failed(exc.code or "upstream_error", exc.message)], relayed.response)
    finally:
        exchange.usage, exchange.tool_calls = tap.usage, tap.tool_calls
        await upstream_response.aclose()


def _decoded(payloads: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for payload in payloads:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


async def read(response_id: str, key: ClientKey | None) -> StoredResponse:
    """Return the key's stored response, a live one whose process died marked failed first; 404 if none."""
    found = await dbthread.run(_read, response_id, key)
    if found is None:
        raise not_found(response_id)
    return found


def _read(response_id: str, key: ClientKey | None) -> StoredResponse | None:
    found = StoredResponse.objects.for_key(response_id, key)
    if found is not None and found.running:
        if StoredResponse.objects.lose(_stale_before(), response_id=response_id):
            found = StoredResponse.objects.for_key(response_id, key)
    return found


def not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


async def resume(request: ApiRequest, response_id: str, starting_after: int | None) -> HttpResponseBase:
    """Stream a background response's events after ``starting_after``: live while it runs, replayed after."""
    found = await read(response_id, request.client_key)
    if not found.background:
        raise InvalidRequestError("Only responses created with `background: true` can be streamed again.",
                                  param="stream", code="not_streamable")
    request.exchange.stream = True
    request.exchange.status = 200
    run = RUNS.get(response_id)
    if run is not None:
        parts: AsyncIterator[Batch] = _drain(run.watch(starting_after))
    else:
        parts = _watch_remote(found, starting_after, request.client_key)
    return EventStream(parts, request.exchange, owns_row=True)


async def _drain(queue: asyncio.Queue[Batch | None]) -> AsyncGenerator[Batch]:
    while (batch := await queue.get()) is not None:
        yield batch


async def _watch_remote(found: StoredResponse, starting_after: int | None,
                        key: ClientKey | None) -> AsyncGenerator[Batch]:
    """Yield a background response's events after ``starting_after`` from wherever they are.

    A finished one's come from its row. A live one's come from its process, asked through
    the channel layer; when that goes quiet for WATCH_IDLE seconds (no events, a process
    that cannot be reached), the row is read again: finished by now, lost with its
    process, or still running (asked again, from the last event seen).
    """
    last = -1 if starting_after is None else starting_after
    layer = get_channel_layer()
    while found.running:
        reply = await layer.new_channel("background.reply.")
        await layer.send(found.runner, {"type": "background.watch", "id": found.pk, "after": last, "reply": reply})
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(reply), WATCH_IDLE)
            except TimeoutError:
                break
            if message["type"] != "background.events":
                break  # the end, or a process that no longer runs it: the row says how it went
            batch = protocol.after(message["events"], last)
            if batch:
                last = batch[-1]["sequence_number"]
                yield batch
        row = await dbthread.run(_read, found.pk, key)
        if row is None:
            return  # deleted meanwhile
        found = row
    stored = protocol.after(found.stream(), last)
    yield stored or [protocol.ending(found.to_dict(), last + 1)]


async def _forward(run: Run | None, starting_after: Any, reply: str) -> None:
    """Send a remote watcher the run's events after ``starting_after``, then each batch, then the end."""
    layer = get_channel_layer()
    try:
        if run is None:
            await layer.send(reply, {"type": "background.gone"})
            return
        queue = run.watch(starting_after if isinstance(starting_after, int) else None)
        while (batch := await queue.get()) is not None:
            await layer.send(reply, {"type": "background.events", "events": batch})
        await layer.send(reply, {"type": "background.end"})
    except Exception as exc:  # a full or failed channel: the watcher reads the row again and asks again
        logger.warning("could not forward background events to %s: %s", reply, type(exc).__name__)


async def cancel(request: ApiRequest, response_id: str) -> dict[str, Any]:
    """Cancel a background response, wherever it runs; return it as it ended. A finished one is left as it is."""
    found = await read(response_id, request.client_key)
    if not found.background:
        raise InvalidRequestError("Only responses created with `background: true` can be cancelled; this one was "
                                  "answered in the foreground.", code="not_cancellable")
    if found.running:
        run = RUNS.get(response_id)
        if run is not None:
            await _cancel_run(run)
        else:
            await _cancel_remote(found)
        found = await read(response_id, request.client_key)
        if found.running:
            raise GatewayError("The gateway process answering this response did not confirm the cancel; "
                               "try again.", code="cancel_unconfirmed", status=503)
    return found.to_dict()


async def _cancel_run(run: Run) -> None:
    if run.task is None or run.task.done():
        return
    run.cancelling = True
    run.task.cancel()
    await asyncio.wait([run.task])


async def _cancel_for(run: Run | None, reply: str) -> None:
    if run is not None:
        await _cancel_run(run)
    try:
        await get_channel_layer().send(reply, {"type": "background.cancelled"})
    except Exception as exc:
        logger.warning("could not confirm a cancel to %s: %s", reply, type(exc).__name__)


async def _cancel_remote(found: StoredResponse) -> None:
    layer = get_channel_layer()
    reply = await layer.new_channel("background.reply.")
    await layer.send(found.runner, {"type": "background.cancel", "id": found.pk, "reply": reply})
    try:
        await asyncio.wait_for(layer.receive(reply), CANCEL_WAIT)
    except TimeoutError:
        logger.warning("no process confirmed the cancel of %s", found.pk)


async def drain(timeout: float) -> None:
    """Let this process's runs finish for up to ``timeout`` seconds, then end the rest as failed (shutdown)."""
    tasks = [run.task for run in RUNS.values() if run.task is not None]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)


class EventStream(ClosingStream):
    """A background response's events as SSE; ``owns_row``: closing it writes its request's audit row."""

    def __init__(self, parts: AsyncIterator[Batch], exchange: Exchange, *, owns_row: bool) -> None:
        super().__init__((), content_type="text/event-stream", headers=relay.STREAM_HEADERS)
        self.parts, self.exchange, self.owns_row = parts, exchange, owns_row
        self._sending: AsyncGenerator[bytes] | None = None
        self._ended = False
        self.error: GatewayError | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._sending = self._send()
        return self._sending

    async def _send(self) -> AsyncGenerator[bytes]:
        last = -1
        try:
            async for batch in self.parts:
                last = batch[-1].get("sequence_number", last)
                yield self._sent(relay.encode_events(batch))
        except Exception as exc:
            # The response itself goes on (or ended): only this watch failed, and the client
            # is told so with the API's stream error event, not left waiting.
            logger.exception("watching background response events failed")
            self.error = GatewayError(f"The gateway could not follow this response ({type(exc).__name__}); "
                                      "resume it again from the last event received.", code="resume_failed")
            yield self._sent(encode_event(stream_error(last + 1, self.error)))
            return
        self._ended = True

    def _sent(self, chunk: bytes) -> bytes:
        self.exchange.mark_first_byte()
        self.exchange.response_bytes += len(chunk)
        self.exchange.capture_response(chunk)
        return chunk

    async def aclose(self) -> None:
        if self._sending is not None:
            await self._sending.aclose()
        await self.parts.aclose()  # type: ignore[attr-defined]
        if self.owns_row:
            if self.error is not None:
                self.exchange.finish(None, self.error)
            else:
                self.exchange.finish(Outcome.OK if self._ended else Outcome.CLIENT_DISCONNECTED)
