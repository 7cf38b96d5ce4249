"""Stored state in the API: a request's history taken in before it is routed, its answer kept before it ends.

The upstream always gets a complete, stateless request (so failing over to another
upstream loses nothing): ``take_in`` puts the stored history (of ``previous_response_id``,
or the items of a ``conversation``) before the new input and resolves ``item_reference``
items; ``Keeper.keep`` writes the finished response (and appends the turn to its
conversation) before its terminal event or non-streamed answer leaves the gateway, so a
follow-up sent the moment it arrives, to any process, finds it.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from api.connection import memory_of
from api.decorators import ApiRequest
from bridge import history
from bridge.errors import InvalidRequestError
from plumbing import dbthread
from state.models import Conversation, ResponseToStore, StoredItem, StoredResponse
from upstreams.models import ClientKey

logger = logging.getLogger("gateway")

# Request fields whose stored state the gateway does not hold yet: refused with a 400
# naming them, rather than answered without them (issue 11: nothing silently ignored).
NOT_YET = {
    "prompt": "Stored prompt templates are not supported by this gateway; send the instructions and input.",
}


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
    events: list[dict[str, Any]] | None = None  # a background response's stream so far (api/background.py)
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


async def take_in(request: ApiRequest, body: dict[str, Any]) -> tuple[dict[str, Any], Keeper | None]:
    """Return the body to route (earlier items, then the new input) and the keeper of its answer (None: not stored).

    Raises 400 ``previous_response_not_found`` for a previous response that is not this
    key's stored one, and 400 naming an ``item_reference`` that resolves to nothing.
    """
    for name, why in NOT_YET.items():
        if body.get(name) is not None:
            raise InvalidRequestError(why, param=name, code="unsupported_parameter")
    background = history.wants_background(body)
    previous_id = history.check_state_fields(body)
    conversation_id = history.conversation_of(body)
    store = history.wants_store(body)
    wanted = history.references(body["input"])
    memory = memory_of(request)
    if not (store or previous_id or conversation_id or wanted or memory):
        return body, None  # Codex's case (store: false, its whole history sent): nothing to keep or read
    own = history.input_items(body["input"])
    read = Read()
    remembered = memory.earlier(previous_id) if memory is not None and previous_id is not None else None
    if remembered is not None:  # the socket's latest response: no trip to the database
        read.earlier, previous_id_to_read = remembered, None
    else:
        previous_id_to_read = previous_id
    if previous_id_to_read is not None or conversation_id is not None or wanted:
        read = await dbthread.run(_read, previous_id_to_read, conversation_id, wanted, request.client_key, read)
        if previous_id_to_read is not None and read.previous is None:
            raise history.previous_not_found(previous_id_to_read)
        if conversation_id is not None and read.conversation is None:
            raise InvalidRequestError(f"Conversation with id '{conversation_id}' not found.", param="conversation",
                                      code="conversation_not_found")
        own = history.resolve(own, read.found)
    routed = {key: value for key, value in body.items() if key not in STATE_FIELDS}
    if read.earlier or wanted:
        routed["input"] = history.for_upstream([*read.earlier, *own])
    if memory is not None:
        memory.answering([*read.earlier, *own])
    if not store and read.conversation is None:
        return routed, None
    applied: dict[str, Any] = {"store": store, "previous_response_id": previous_id, "background": background}
    if conversation_id is not None:
        applied["conversation"] = {"id": conversation_id}
    # Continuing a response only the socket remembers: stored, this one carries that history itself.
    inputs = [*read.earlier, *own] if remembered is not None else own
    return routed, Keeper(request.client_key, request.exchange.request_id, read.previous, inputs, store,
                          read.conversation, applied, background)


# Fields the gateway answers itself: a stateless upstream is sent the history instead, in
# the foreground (api/background.py answers a background response itself).
STATE_FIELDS = ("previous_response_id", "conversation", "background")


@dataclass(slots=True)
class Read:
    """What the database holds for a request: what it continues, the history before it, the items it references."""

    previous: StoredResponse | None = None
    conversation: Conversation | None = None
    earlier: list[dict[str, Any]] = field(default_factory=list)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)


def _read(previous_id: str | None, conversation_id: str | None, wanted: list[str], key: ClientKey | None,
          read: Read | None = None) -> Read:
    """Return what the request's state fields name (one trip to a database thread), added to ``read``."""
    read = read or Read()
    if previous_id is not None:
        chain = StoredResponse.objects.chain(previous_id, key)
        if chain is not None:
            read.previous, read.earlier = chain
    if conversation_id is not None:
        read.conversation = Conversation.objects.for_key(conversation_id, key)
        if read.conversation is not None:
            read.earlier = read.conversation.history()
    if wanted:
        read.found = StoredItem.objects.by_item_id(wanted, key)
    return read
