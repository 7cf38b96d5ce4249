"""Stored responses in the API: a request's history taken in before it is routed, its answer kept before it ends.

The upstream always gets a complete, stateless request (so failing over to another
upstream loses nothing): ``take_in`` puts the stored history of ``previous_response_id``
before the new input and resolves ``item_reference`` items; ``Keeper.keep`` writes the
finished response before its terminal event (or non-streamed answer) leaves the gateway,
so a follow-up sent the moment it arrives, to any process, finds it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from api.decorators import ApiRequest
from bridge import history
from bridge.errors import InvalidRequestError
from plumbing import dbthread
from state.models import StoredItem, StoredResponse
from upstreams.models import ClientKey

logger = logging.getLogger("gateway")

# Request fields whose stored state the gateway does not hold yet: refused with a 400
# naming them, rather than answered without them (issue 11: nothing silently ignored).
NOT_YET = {
    "conversation": "Conversations are not supported by this gateway yet; send the history in `input`, "
                    "or continue with `previous_response_id`.",
    "prompt": "Stored prompt templates are not supported by this gateway; send the instructions and input.",
}


@dataclass(slots=True)
class Keeper:
    """What to store once the answer is done: who asked, what it continued, its own input items."""

    key: ClientKey | None
    request_id: str
    previous: StoredResponse | None
    inputs: list[dict[str, Any]]
    applied: dict[str, Any] = field(default_factory=dict)  # the state fields as applied, for the stored object
    kept: bool = False

    async def keep(self, response: dict[str, Any]) -> None:
        """Store the finished ``response`` (once); a failure is logged, the answer still goes out."""
        if self.kept:
            return
        self.kept = True
        try:
            await dbthread.run(_store, {**response, **self.applied}, self)
        except Exception:
            logger.exception("could not store response %s (request %s)", response.get("id"), self.request_id)


def _store(response: dict[str, Any], keeper: Keeper) -> StoredResponse:
    return StoredResponse.objects.store(response, key=keeper.key, previous=keeper.previous, inputs=keeper.inputs,
                                        request_id=keeper.request_id)


async def take_in(request: ApiRequest, body: dict[str, Any]) -> tuple[dict[str, Any], Keeper | None]:
    """Return the body to route (earlier items, then the new input) and the keeper of its answer (None: not stored).

    Raises 400 ``previous_response_not_found`` for a previous response that is not this
    key's stored one, and 400 naming an ``item_reference`` that resolves to nothing.
    """
    for name, why in NOT_YET.items():
        if body.get(name) is not None:
            raise InvalidRequestError(why, param=name, code="unsupported_parameter")
    if body.get("background") is True:
        raise InvalidRequestError("Background responses are not supported by this gateway yet; "
                                  "send the request without `background`.", param="background",
                                  code="unsupported_parameter")
    previous_id = history.check_state_fields(body)
    own = history.input_items(body["input"])
    wanted = history.references(own)
    previous: StoredResponse | None = None
    earlier: list[dict[str, Any]] = []
    if previous_id is not None or wanted:
        previous, earlier, found = await dbthread.run(_read, previous_id, wanted, request.client_key)
        if previous_id is not None and previous is None:
            raise history.previous_not_found(previous_id)
        own = history.resolve(own, found)
    routed = {key: value for key, value in body.items() if key != "previous_response_id"}
    routed["input"] = [*earlier, *own]
    if not history.wants_store(body):
        return routed, None
    applied = {"store": True, "previous_response_id": previous_id}
    return routed, Keeper(request.client_key, request.exchange.request_id, previous, own, applied)


def _read(previous_id: str | None, wanted: list[str], key: ClientKey | None) -> tuple[
    StoredResponse | None, list[dict[str, Any]], dict[str, dict[str, Any]]
]:
    """Return the previous response, its whole history and the referenced items (one database trip)."""
    previous: StoredResponse | None = None
    earlier: list[dict[str, Any]] = []
    if previous_id is not None:
        chain = StoredResponse.objects.chain(previous_id, key)
        if chain is not None:
            previous, earlier = chain
    found = StoredItem.objects.by_item_id(wanted, key) if wanted else {}
    return previous, earlier, found
