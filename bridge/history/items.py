"""The input a request stands for once stored state is taken in: earlier items first, references resolved.

Pure: the IO side (api/stored/) reads the stored items; this module decides what the
upstream is sent. Open Responses, ``previous_response_id``: "the server MUST load both the
input and output associated with that prior response", and the model sees them before the
new input, in that order.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bridge.errors import InvalidRequestError

# What the client may write as an item's content, as the API lists it back (input_items).
_PART_TYPE = {"assistant": "output_text"}  # any other role's text is input_text
# Item id prefixes, by item type, for items the client sent without an id (the API gives
# every stored item one, so that it can be listed and referenced later).
ID_PREFIXES = {
    "message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_",
    "custom_tool_call": "ctc_", "custom_tool_call_output": "ctco_", "local_shell_call": "lsh_",
    "local_shell_call_output": "lsho_",
}
REFERENCE = "item_reference"


def _uuid_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def input_items(raw: str | list[dict[str, Any]], new_id: Callable[[str], str] = _uuid_id) -> list[dict[str, Any]]:
    """Return a request's ``input`` as the items it is stored and listed as: typed, with ids, content as parts.

    A string is one user message; ``{"role": ..., "content": "text"}`` becomes a typed
    message with one text part. References stay references (``resolve`` replaces them).
    """
    items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"`input[{position}]` must be an object.", param=f"input[{position}]")
    return [_stored_form(item, new_id) for item in items]


def _kind(item: dict[str, Any]) -> Any:
    # `type` is optional on messages ({"role": ..., "content": ...}) and on references ({"id": ...}).
    return item.get("type") or ("message" if "role" in item else REFERENCE if "id" in item else None)


def _stored_form(item: dict[str, Any], new_id: Callable[[str], str]) -> dict[str, Any]:
    kind = _kind(item)
    if kind == REFERENCE:
        return {"type": REFERENCE, "id": item.get("id")}
    stored = {**item, "type": kind}
    if kind == "message":
        content = stored.get("content")
        if isinstance(content, str):
            part = _PART_TYPE.get(str(stored.get("role")), "input_text")
            stored["content"] = [{"type": part, "text": content}]
        stored.setdefault("status", "completed")
    if not isinstance(stored.get("id"), str) or not stored["id"]:
        stored["id"] = new_id(ID_PREFIXES.get(str(kind), "item_"))
    return stored


def for_upstream(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return stored items as a stateless upstream is sent them: without their ids.

    An id tells a stateful server to look the item up: OpenAI answers 404 "Items are not
    persisted when `store` is set to false" for a reasoning item it does not hold. The
    stored copies keep their ids; the items are whole without them.
    """
    return [{key: value for key, value in item.items() if key != "id"} for item in items]


def references(items: Any) -> list[str]:
    """Return the ids the ``item_reference`` items of an input name, in order (what the IO side must look up).

    Takes the input as sent (a string, or items with or without ``type``) or as stored.
    """
    if not isinstance(items, list):
        return []
    return [str(item.get("id")) for item in items if isinstance(item, dict) and _kind(item) == REFERENCE]


def resolve(items: list[dict[str, Any]], found: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``items`` with every reference replaced by the stored item it names.

    Never drops one: a reference to an item that is not stored (another key's, deleted,
    or from a response sent with ``store: false``) is the client's error, named in a 400.
    """
    resolved = []
    for position, item in enumerate(items):
        if item.get("type") != REFERENCE:
            resolved.append(item)
            continue
        target = found.get(str(item.get("id")))
        if target is None:
            raise InvalidRequestError(
                f"Item with id '{item.get('id')}' not found. Items are kept only for responses stored "
                "with `store` true (the default), by the key that made them.",
                param=f"input[{position}]", code="item_not_found")
        resolved.append(target)
    return resolved


def check_state_fields(body: dict[str, Any]) -> str | None:
    """Return the ``previous_response_id`` of a request (None without one); raise for malformed state fields."""
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise InvalidRequestError("Invalid type for 'previous_response_id': expected a non-empty string.",
                                  param="previous_response_id", code="invalid_type")
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise InvalidRequestError("Invalid type for 'store': expected a boolean.", param="store", code="invalid_type")
    return previous


def conversation_of(body: dict[str, Any]) -> str | None:
    """Return the id of the request's ``conversation`` (an id, or ``{"id": ...}``); None without one.

    It cannot go with ``previous_response_id``: both name what comes before the input.
    """
    value = body.get("conversation")
    if value is None:
        return None
    conversation_id = value.get("id") if isinstance(value, dict) else value
    if not isinstance(conversation_id, str) or not conversation_id:
        raise InvalidRequestError("Invalid type for 'conversation': expected an id or an object with an `id`.",
                                  param="conversation", code="invalid_type")
    if body.get("previous_response_id") is not None:
        raise InvalidRequestError("Mutually exclusive parameters: send one of 'previous_response_id' or "
                                  "'conversation'.", param="conversation", code="mutually_exclusive_parameters")
    return conversation_id


def wants_store(body: dict[str, Any]) -> bool:
    """Whether the response is to be stored: ``store`` defaults to true, as in the OpenAI API."""
    return body.get("store") is not False


def previous_not_found(response_id: str, why: str = "") -> InvalidRequestError:
    """Return the API's error for a ``previous_response_id`` that no stored response of this key has."""
    return InvalidRequestError(f"Previous response with id '{response_id}' not found.{why}",
                               param="previous_response_id", code="previous_response_not_found")


def wants_background(body: dict[str, Any]) -> bool:
    """Whether the response is to be answered in the background; it needs ``store``, as in the OpenAI API.

    Polling and resuming read the stored response: one that is not stored could not be found again.
    """
    background = body.get("background")
    if background is not None and not isinstance(background, bool):
        raise InvalidRequestError("Invalid type for 'background': expected a boolean.", param="background",
                                  code="invalid_type")
    if background and not wants_store(body):
        raise InvalidRequestError("Background responses must be stored: send `store` true (the default) with "
                                  "`background` true.", param="store", code="invalid_value")
    return bool(background)
