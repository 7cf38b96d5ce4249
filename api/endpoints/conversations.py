"""The Conversations API: a conversation and its items, as OpenAI's ``/v1/conversations`` serves them.

A response sent with ``conversation`` reads its items first and adds its own input and
output after the answer (api/stored/keeper.py). Everything here belongs to the client key that
made it: another key gets 404, as for an id that does not exist.
"""
from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase

from api.http import lists
from api.http.answers import JsonAnswer
from api.http.endpoint import ApiRequest, api_view
from bridge.errors import InvalidRequestError, NotFoundError
from bridge.history import items as history
from bridge.validation import require_object
from plumbing import dbthread
from state.models import Conversation
from upstreams.models import ClientKey

MAX_ITEMS = 20  # items one call may add (OpenAI's bound)
MAX_METADATA = 16  # key-value pairs of metadata; keys up to 64 characters, values up to 512


@api_view("conversations", methods=("POST",))
async def conversations(request: ApiRequest) -> HttpResponseBase:
    """Create a conversation, with its first ``items`` and its ``metadata``."""
    body = require_object(request.json)
    items = _items(body.get("items", []))
    started = await dbthread.run(Conversation.objects.start, request.client_key, _metadata(body.get("metadata")),
                                 items)
    return JsonAnswer.of(started.to_dict())


@api_view("conversations/{id}", body=("POST",), methods=("GET", "POST", "DELETE"))
async def conversation(request: ApiRequest, conversation_id: str) -> HttpResponseBase:
    """``GET`` a conversation, ``POST`` its new ``metadata``, ``DELETE`` it with its items."""
    found = await _conversation(conversation_id, request.client_key)
    if request.method == "DELETE":
        await dbthread.run(found.delete)
        return JsonAnswer.of({"id": conversation_id, "object": "conversation.deleted", "deleted": True})
    if request.method == "POST":
        found.set_metadata(_metadata(require_object(request.json).get("metadata")))
        await dbthread.run(lambda: found.save(update_fields=["metadata"]))
    return JsonAnswer.of(found.to_dict())


@api_view("conversations/{id}/items", body=("POST",), methods=("GET", "POST"))
async def items(request: ApiRequest, conversation_id: str) -> HttpResponseBase:
    """``GET`` the items of a conversation (newest first, paginated); ``POST`` more ``items`` (returns them)."""
    found = await _conversation(conversation_id, request.client_key)
    if request.method == "POST":
        added = _items(require_object(request.json).get("items"))
        await dbthread.run(found.add, added)
        return JsonAnswer.of(lists.listing(added))
    return JsonAnswer.of(lists.page(await dbthread.run(found.history), request))


@api_view("conversations/{id}/items/{item_id}", body=False, methods=("GET", "DELETE"))
async def item(request: ApiRequest, conversation_id: str, item_id: str) -> HttpResponseBase:
    """``GET`` one item of a conversation; ``DELETE`` it (answers the conversation, as the API does)."""
    found = await _conversation(conversation_id, request.client_key)
    stored = await dbthread.run(lambda: found.items.filter(item_id=item_id).order_by("-pk").first())
    if stored is None:
        raise NotFoundError(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.",
                            param="item_id")
    if request.method == "DELETE":
        await dbthread.run(stored.delete)
        return JsonAnswer.of(found.to_dict())
    return JsonAnswer.of(stored.to_dict())


async def _conversation(conversation_id: str, key: ClientKey | None) -> Conversation:
    found = await dbthread.run(Conversation.objects.for_key, conversation_id, key)
    if found is None:
        raise NotFoundError(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")
    return found


def _items(raw: Any) -> list[dict[str, Any]]:
    """Return the items to add, as they are stored (typed, with ids); references are not taken here."""
    if not isinstance(raw, list):
        raise InvalidRequestError("Invalid type for 'items': expected an array of items.", param="items",
                                  code="invalid_type")
    if len(raw) > MAX_ITEMS:
        raise InvalidRequestError(f"At most {MAX_ITEMS} items can be added at a time.", param="items",
                                  code="array_above_max_length")
    added = history.input_items(raw)
    if history.references(added):
        raise InvalidRequestError("Item references cannot be added to a conversation; add the items themselves.",
                                  param="items", code="invalid_value")
    return added


def _metadata(raw: Any) -> dict[str, str]:
    """Return valid metadata: at most 16 pairs of strings, keys up to 64 characters, values up to 512."""
    if raw is None:
        return {}
    if (not isinstance(raw, dict) or len(raw) > MAX_METADATA
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                       for k, v in raw.items())):
        raise InvalidRequestError(f"'metadata' must be an object of at most {MAX_METADATA} string values "
                                  "(keys up to 64 characters, values up to 512).", param="metadata",
                                  code="invalid_value")
    return raw
