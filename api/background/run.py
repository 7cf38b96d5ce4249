"""A background response (``background: true``) answered by a task of the process that took it: its ``Run``.

``start`` stores the response as queued, starts its run and answers at once: the queued
Response, or with ``stream`` the live stream of the run's events. The run is one more
consumer of the pipeline (api/pipeline/relay.py): it asks the upstream (with failover),
publishes the pipeline's events to whoever watches (api/background/watch.py), and holds
the request's answer until it is over, whether or not the client stays: the ``POST``'s
audit row says how the run ended. A cancel (api/background/inbox.py) or the drain ends it
early, stored as it ended.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponseBase

from api.http.answers import Answer, JsonAnswer, StreamAnswer
from api.http.endpoint import ApiRequest
from api.pipeline.plan import Plan, connect, refusal
from api.pipeline.relay import Batch, Pipeline, Relay, encode_events, pipeline_for
from api.stored.keeper import Keeper
from bridge import background as protocol
from bridge.errors import BridgeError, GatewayError, ShuttingDownError, UpstreamError
from bridge.sse import encode_event
from bridge.stream import ResponseStream
from bridge.wire import stream_error
from logs.audit.exchange import Ending, Exchange
from plumbing import dbthread, metrics
from state.models import ResponseToStore, StoredResponse

logger = logging.getLogger("gateway")
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


async def start(request: ApiRequest, body: dict[str, Any], plan: Plan, runner: str) -> HttpResponseBase:
    """Queue a background response, start its run, and answer: the queued Response, or the live stream.

    ``runner``: this process's channel (api/background/inbox.py), where other processes reach its runs.
    """
    keeper = plan.keeper
    assert keeper is not None and keeper.background
    refused = refusal(plan.routes, body)
    if refused is not None:  # told now, not after a 200 (queued)
        raise refused
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
    answered = Answer(request.exchange, 200)
    watching = run.watch(None) if body.get("stream") else None
    run.task = asyncio.get_running_loop().create_task(_answer(run, request, body, plan, opening, answered.hold()))
    if watching is not None:
        batches = until_end(watching)
        return StreamAnswer(watched(batches, request.exchange), request.exchange, answered.hold(),
                            on_close=batches.aclose)
    return JsonAnswer.of(queued, answer=answered.hold())


async def until_end(queue: asyncio.Queue[Batch | None]) -> AsyncGenerator[Batch]:
    """Yield a watcher's batches until the end (None)."""
    while (batch := await queue.get()) is not None:
        yield batch


async def watched(batches: AsyncIterator[Batch], exchange: Exchange, ending: Ending | None = None
                  ) -> AsyncGenerator[bytes]:
    """Yield a background response's events as SSE to a client watching it; ``ending``: the watch's own, if it has one.

    The response itself goes on (or ended) when only this watch fails: the client is told so
    with the stream's ``error`` event (resume again from the last event received), not left waiting.
    """
    last = -1
    try:
        async for batch in batches:
            last = batch[-1].get("sequence_number", last)
            exchange.mark_first_byte()
            yield encode_events(batch)
    except Exception as exc:
        logger.exception("watching background response events failed")
        error = GatewayError(f"The gateway could not follow this response ({type(exc).__name__}); "
                             "resume it again from the last event received.", code="resume_failed")
        if ending is not None:
            ending.fail(error)
        exchange.mark_first_byte()
        yield encode_event(stream_error(last + 1, error))
        return
    if ending is not None:
        ending.complete()


async def _answer(run: Run, request: ApiRequest, body: dict[str, Any], plan: Plan, opening: Batch,
                  answered: Answer) -> None:
    """Answer the background response ``run`` from its upstream; store it, then end it, however it goes."""
    keeper, exchange, ending = plan.keeper, request.exchange, answered.ending
    assert keeper is not None
    pipeline: Pipeline | None = None
    try:
        try:
            routed = {**plan.routed, "stream": True}  # even for a client that polls: the events are kept
            reply = await connect(request, routed, plan.routes, asked=body)
            exchange.stream = bool(body.get("stream"))
        except BridgeError as exc:
            ending.fail(exc)
            unanswered = protocol.RelayedEvents(opening, keeper.applied)
            await _end(run, keeper, [unanswered.failed(exc.code or "upstream_error", exc.message)],
                       unanswered.response)
            return
        queued = opening[-1]["response"]
        await dbthread.run(StoredResponse.objects.progress, {**queued, "status": "in_progress"})
        pipeline = pipeline_for(reply, body, keeper, exchange, ending, opening)
        async for batch in pipeline.events():
            run.publish(batch)
    except asyncio.CancelledError:
        if run.cancelling:
            ending.cancel()
        else:
            ending.fail(ShuttingDownError())
        await _stopped(run, keeper, pipeline, opening)
        if not run.cancelling:
            raise
    except Exception as exc:
        logger.exception("background response %s failed in the gateway", run.id)
        ending.fail(UpstreamError(f"The gateway failed ({type(exc).__name__}).", code="internal_error"))
        if not keeper.kept:
            unanswered = pipeline.renumbered if isinstance(pipeline, Relay) and pipeline.renumbered else \
                protocol.RelayedEvents(opening, keeper.applied)
            await _end(run, keeper, [unanswered.failed("internal_error", "The gateway failed.")], unanswered.response)
    finally:
        run.end()
        RUNS.pop(run.id, None)
        metrics.background_running.dec()
        answered.release()


async def _stopped(run: Run, keeper: Keeper, pipeline: Pipeline | None, opening: Batch) -> None:
    """End a run its client cancelled, or the drain cut: its last events, stored with it, then sent."""
    if keeper.kept:
        return
    last = await asyncio.shield(pipeline.stop(cancelled=run.cancelling)) if pipeline is not None else []
    if not last and not keeper.kept:  # not connected yet: the response ends as it was queued
        unanswered = protocol.RelayedEvents(opening, keeper.applied)
        last = [unanswered.cancelled() if run.cancelling else unanswered.failed("shutting_down", SHUTTING_DOWN)]
        await asyncio.shield(keeper.keep(unanswered.response, last))
    run.publish(last)


async def _end(run: Run, keeper: Keeper, last: Batch, response: dict[str, Any]) -> None:
    """Store the finished response with its whole stream, then send the stream's last events."""
    await asyncio.shield(keeper.keep(response, last))
    run.publish(last)


async def end_all(timeout: float) -> None:
    """Let this process's runs finish for up to ``timeout`` seconds, then end the rest as failed (shutdown)."""
    tasks = [run.task for run in RUNS.values() if run.task is not None]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)
