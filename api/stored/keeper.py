"""A response kept once its answer is done: stored, and added to its conversation, before its last event leaves.

``Keeper.keep`` writes the finished response (and appends the turn to its conversation)
before its terminal event or non-streamed answer leaves the gateway, so a follow-up sent
the moment it arrives, to any process, finds it. Writes are grouped (``StoreWriter``):
streams that end together share one transaction.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from plumbing import dbthread
from state.models import Conversation, ResponseToStore, StoredResponse
from upstreams.models import ClientKey

logger = logging.getLogger("gateway")


@dataclass(slots=True)
class Keeper:
    """What to store once the answer is done: who asked, what it continued, its own input items."""

    key: ClientKey | None
    request_id: str
    previous: StoredResponse | None
    inputs: list[dict[str, Any]]
    store: bool = True
    conversation: Conversation | None = None
    applied: dict[str, Any] = field(default_factory=dict)  # the state fields as applied, for the stored object
    background: bool = False
    events: list[dict[str, Any]] | None = None  # a background response's stream so far (api/background/)
    kept: bool = False

    async def keep(self, response: dict[str, Any], last: list[dict[str, Any]] | None = None) -> None:
        """Store the finished ``response`` and add the turn to its conversation (once); a failure is logged.

        ``last``: the events that end a background response's stream, not sent yet (they
        are stored with the rest). Returns once it is committed: the caller sends the
        terminal event after that.
        """
        if self.kept:
            return
        self.kept = True
        if self.events is not None:
            self.events = [*self.events, *(last or [])]
        try:
            await WRITER.write(self, {**response, **self.applied})
        except Exception:
            logger.exception("could not store response %s (request %s)", response.get("id"), self.request_id)


class StoreWriter:
    """Write finished responses in batches from one background task per process (a group commit).

    Each ``write`` waits for the commit of its batch, so a stored response is readable
    before its stream ends, as one written alone would be; streams that end together share
    one transaction. A batch the database refuses is written again one response at a time,
    so that one bad row cannot take the others with it.
    """

    BATCH = 200

    def __init__(self) -> None:
        self.queue: list[tuple[Keeper, dict[str, Any], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def write(self, keeper: Keeper, response: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.queue.append((keeper, response, done))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())
        # Shielded: a client that leaves does not undo a write the others share.
        await asyncio.shield(done)

    async def _run(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[: self.BATCH], self.queue[self.BATCH:]
            try:
                errors = await dbthread.run(_keep_all, [(keeper, response) for keeper, response, _ in batch])
            except Exception as exc:  # the database thread itself failed
                errors = [exc] * len(batch)
            for (_, _, done), error in zip(batch, errors, strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)


WRITER = StoreWriter()


def _keep_all(batch: list[tuple[Keeper, dict[str, Any]]]) -> list[Exception | None]:
    """Store a batch in one transaction; if it fails, each on its own. Return each one's error, if any."""
    try:
        with transaction.atomic():
            StoredResponse.objects.store_many([_finished(keeper, response)
                                               for keeper, response in batch if keeper.store])
            for keeper, response in batch:
                _add_to_conversation(keeper, response)
        return [None] * len(batch)
    except Exception:
        if len(batch) == 1:
            raise
    errors: list[Exception | None] = []
    for one in batch:
        try:
            errors += _keep_all([one])
        except Exception as exc:
            errors.append(exc)
    return errors


def _finished(keeper: Keeper, response: dict[str, Any]) -> ResponseToStore:
    return ResponseToStore(response, keeper.key, keeper.previous, keeper.inputs, keeper.request_id, keeper.events)


def _add_to_conversation(keeper: Keeper, response: dict[str, Any]) -> None:
    if keeper.conversation is not None:
        outputs = [item for item in response.get("output") or [] if isinstance(item, dict)]
        keeper.conversation.add([*keeper.inputs, *outputs])
