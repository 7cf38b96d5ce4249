"""A request's stored history, taken in before it is routed: the upstream always gets a complete, stateless request.

``take_in`` puts the stored history (of ``previous_response_id``, or the items of a
``conversation``) before the new input and resolves ``item_reference`` items, so failing
over to another upstream loses nothing; it returns the ``Keeper`` of the answer
(api/stored/keeper.py), or None when nothing is to be kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.http.endpoint import ApiRequest
from api.stored.keeper import Keeper
from api.stored.memory import memory_of
from bridge.errors import InvalidRequestError
from bridge.history import items as history
from plumbing import dbthread
from state.models import Conversation, StoredItem, StoredResponse
from upstreams.models import ClientKey

# Request fields whose stored state the gateway does not hold yet: refused with a 400
# naming them, rather than answered without them (issue 11: nothing silently ignored).
NOT_YET = {
    "prompt": "Stored prompt templates are not supported by this gateway; send the instructions and input.",
}


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request's state fields ask of the gateway: what it continues, where it is kept, what it references."""

    previous_id: str | None
    conversation_id: str | None
    store: bool
    background: bool
    wanted: list[str]  # the ids its item_reference items name

    @classmethod
    def of(cls, body: dict[str, Any]) -> Asked:
        """Read the state fields (a 400 for a malformed one, or one whose state the gateway does not hold yet)."""
        for name, why in NOT_YET.items():
            if body.get(name) is not None:
                raise InvalidRequestError(why, param=name, code="unsupported_parameter")
        background = history.wants_background(body)
        return cls(previous_id=history.check_state_fields(body), conversation_id=history.conversation_of(body),
                   store=history.wants_store(body), background=background,
                   wanted=history.references(body["input"]))

    @property
    def nothing(self) -> bool:
        """Codex's case (store: false, its whole history sent): nothing to keep or read."""
        return not (self.store or self.previous_id or self.conversation_id or self.wanted)

    def applied(self) -> dict[str, Any]:
        """The state fields as applied, for the stored Response object (a stateless upstream cannot echo them)."""
        applied: dict[str, Any] = {"store": self.store, "previous_response_id": self.previous_id,
                                   "background": self.background}
        if self.conversation_id is not None:
            applied["conversation"] = {"id": self.conversation_id}
        return applied


async def take_in(request: ApiRequest, body: dict[str, Any]) -> tuple[dict[str, Any], Keeper | None]:
    """Return the body to route (earlier items, then the new input) and the keeper of its answer (None: not stored).

    Raises 400 ``previous_response_not_found`` for a previous response that is not this
    key's stored one, and 400 naming an ``item_reference`` that resolves to nothing.
    """
    asked = Asked.of(body)
    memory = memory_of(request)
    if asked.nothing and memory is None:
        return body, None
    own = history.input_items(body["input"])
    # The socket's latest response: no trip to the database.
    remembered = memory.earlier(asked.previous_id) if memory is not None and asked.previous_id is not None else None
    read = await _read_for(request, asked, remembered)
    # A chain of previous_response_ids is a session: its rows are grouped by it, a pool keeps it on one member.
    request.exchange.session = request.exchange.session or read.root
    if read.looked_up:
        own = history.resolve(own, read.found)
    routed = {key: value for key, value in body.items() if key not in STATE_FIELDS}
    if read.earlier or asked.wanted:
        routed["input"] = history.for_upstream([*read.earlier, *own])
    if memory is not None:
        memory.answering([*read.earlier, *own])
    if not asked.store and read.conversation is None:
        return routed, None
    # Continuing a response only the socket remembers: stored, this one carries that history itself.
    inputs = [*read.earlier, *own] if remembered is not None else own
    return routed, Keeper(request.client_key, request.exchange.request_id, read.previous, inputs, asked.store,
                          read.conversation, asked.applied(), asked.background)


async def _read_for(request: ApiRequest, asked: Asked, remembered: list[dict[str, Any]] | None) -> Read:
    """Read what the request's state fields name from the database (one trip), unless the socket remembers it."""
    if remembered is not None:
        read, previous_id = Read(earlier=remembered), None
    else:
        read, previous_id = Read(), asked.previous_id
    if previous_id is None and asked.conversation_id is None and not asked.wanted:
        return read
    read = await dbthread.run(_read, previous_id, asked.conversation_id, asked.wanted, request.client_key, read)
    read.looked_up = True
    if previous_id is not None and read.previous is None:
        raise history.previous_not_found(previous_id)
    if asked.conversation_id is not None and read.conversation is None:
        raise InvalidRequestError(f"Conversation with id '{asked.conversation_id}' not found.", param="conversation",
                                  code="conversation_not_found")
    return read


# Fields the gateway answers itself: a stateless upstream is sent the history instead, in
# the foreground (api/background/ answers a background response itself).
STATE_FIELDS = ("previous_response_id", "conversation", "background")


@dataclass(slots=True)
class Read:
    """What the database holds for a request: what it continues, the history before it, the items it references."""

    previous: StoredResponse | None = None
    root: str = ""  # the first response of the chain it continues: the chain's session
    conversation: Conversation | None = None
    earlier: list[dict[str, Any]] = field(default_factory=list)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    looked_up: bool = False  # the database was asked (references are then resolved)


def _read(previous_id: str | None, conversation_id: str | None, wanted: list[str], key: ClientKey | None,
          read: Read | None = None) -> Read:
    """Return what the request's state fields name (one trip to a database thread), added to ``read``."""
    read = read or Read()
    if previous_id is not None:
        chain = StoredResponse.objects.chain(previous_id, key)
        if chain is not None:
            read.previous, read.earlier, read.root = chain
    if conversation_id is not None:
        read.conversation = Conversation.objects.for_key(conversation_id, key)
        if read.conversation is not None:
            read.earlier = read.conversation.history()
    if wanted:
        read.found = StoredItem.objects.by_item_id(wanted, key)
    return read
