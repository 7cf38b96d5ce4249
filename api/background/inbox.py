"""This process's channel for its background runs: watchers and cancels from other processes, and the heartbeat.

Through the channel layer (Redis, with REDIS_URL) another process may ask a run's process to
forward its events (``forward``: what it has after a sequence number, then each batch as it
comes, so nothing is missed or sent twice) or to cancel it. Every GATEWAY_BACKGROUND_HEARTBEAT
seconds the process beats for its running responses and marks failed those of processes
whose beats stopped (api/background/rows.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from api.background.rows import heartbeat, read, stale_before
from api.background.run import RUNS, Run
from api.http.endpoint import ApiRequest
from bridge.errors import GatewayError, InvalidRequestError
from plumbing import dbthread
from state.models import StoredResponse

logger = logging.getLogger("gateway")
CANCEL_WAIT = 5.0  # seconds a cancel waits for another process to confirm


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
                asyncio.get_running_loop().create_task(forward(run, message.get("after"), reply))
            elif message.get("type") == "background.cancel":
                asyncio.get_running_loop().create_task(_cancel_for(run, reply))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(heartbeat())
            try:
                if RUNS:
                    await dbthread.run(StoredResponse.objects.beat, self.channel)
                lost = await dbthread.run(StoredResponse.objects.lose, stale_before())
                if lost:
                    logger.warning("background responses lost with their process, marked failed: %s", lost)
            except Exception:
                logger.exception("background heartbeat failed")


INBOX = Inbox()


async def forward(run: Run | None, starting_after: Any, reply: str) -> None:
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
