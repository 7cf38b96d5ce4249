"""Watching a background response from any process: ``GET /v1/responses/{id}?stream=true&starting_after=N``.

From the run itself in this process; from another, through the channel layer (Redis, with
REDIS_URL): it asks the running process's inbox (api/background/inbox.py) to forward the
events after N. Once the run is over, its events are read from the row, where they were
stored before the last of them went anywhere.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from channels.layers import get_channel_layer
from django.http import HttpResponseBase

from api.background.rows import read, read_now
from api.background.run import RUNS, until_end, watched
from api.http.answers import Answer, StreamAnswer
from api.http.endpoint import ApiRequest
from api.pipeline.relay import Batch
from bridge import background as protocol
from bridge.errors import InvalidRequestError
from plumbing import dbthread
from state.models import StoredResponse
from upstreams.models import ClientKey

WATCH_IDLE = 5.0  # seconds without an event before a remote watcher checks the row again


async def resume(request: ApiRequest, response_id: str, starting_after: int | None) -> HttpResponseBase:
    """Stream a background response's events after ``starting_after``: live while it runs, replayed after."""
    found = await read(response_id, request.client_key)
    if not found.background:
        raise InvalidRequestError("Only responses created with `background: true` can be streamed again.",
                                  param="stream", code="not_streamable")
    request.exchange.stream = True
    run = RUNS.get(response_id)
    if run is not None:
        batches: AsyncGenerator[Batch] = until_end(run.watch(starting_after))
    else:
        batches = _watch_remote(found, starting_after, request.client_key)
    answered = Answer(request.exchange, 200)
    return StreamAnswer(watched(batches, request.exchange, answered.ending), request.exchange, answered.hold(),
                        on_close=batches.aclose)


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
        row = await dbthread.run(read_now, found.pk, key)
        if row is None:
            return  # deleted meanwhile
        found = row
    stored = protocol.after(found.stream(), last)
    yield stored or [protocol.ending(found.to_dict(), last + 1)]
