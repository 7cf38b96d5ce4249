"""A stored response: ``GET``/``DELETE /v1/responses/{id}``, its ``input_items``, and ``cancel`` (background ones).

The gateway's own store answers first; an id it does not hold may be that of an upstream
that keeps state itself (its switch in the admin: OpenAI, Azure), which is then asked.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpResponseBase

from api.background import inbox, watch
from api.background.rows import not_found, read
from api.http import lists
from api.http.answers import JsonAnswer
from api.http.endpoint import ApiRequest, api_view
from api.pipeline.foreground import ask_state_keepers
from bridge.errors import InvalidRequestError, NotFoundError
from plumbing import dbthread
from state.models import Side, StoredResponse


@api_view("responses/{id}", body=False, methods=("GET", "DELETE"))
async def response_detail(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """``GET`` a stored response as it stands (``?stream=true``: a background one's events); ``DELETE`` it.

    A background response still running is cancelled before it is deleted: its task would
    otherwise store it again when it ends.
    """
    async def local() -> HttpResponseBase:
        if request.method == "DELETE":
            found = await read(response_id, request.client_key)
            if found.running:
                await inbox.cancel(request, response_id)
            if not await dbthread.run(_delete, response_id, request.client_key):
                raise not_found(response_id)
            return JsonAnswer.of({"id": response_id, "object": "response.deleted", "deleted": True})
        if request.GET.get("stream") == "true":
            return await watch.resume(request, response_id, _starting_after(request))
        found = await read(response_id, request.client_key)
        return JsonAnswer.of(found.to_dict())

    return await held_upstream(request, f"responses/{response_id}", local)


@api_view("responses/{id}/input_items", body=False, methods=("GET",))
async def input_items(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """List the input items of a stored response (its own request's, references resolved), paginated."""
    async def local() -> HttpResponseBase:
        items = await dbthread.run(_inputs, response_id, request.client_key)
        if items is None:
            raise not_found(response_id)
        return JsonAnswer.of(lists.page(items, request))

    return await held_upstream(request, f"responses/{response_id}/input_items", local)


@api_view("responses/{id}/cancel", body=False, methods=("POST",))
async def cancel(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """Cancel a background response (wherever it runs) and return it; a finished one is returned as it is."""
    async def local() -> HttpResponseBase:
        return JsonAnswer.of(await inbox.cancel(request, response_id))

    return await held_upstream(request, f"responses/{response_id}/cancel", local)


async def held_upstream(request: ApiRequest, endpoint: str,
                        local: Callable[[], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
    """Answer from the gateway's own store; for an id it does not hold, from an upstream that keeps state."""
    try:
        return await local()
    except NotFoundError:
        relayed = await ask_state_keepers(request, endpoint)
        if relayed is None:
            raise
        return relayed


def _starting_after(request: ApiRequest) -> int | None:
    raw = request.GET.get("starting_after")
    if raw is None:
        return None
    number = int(raw) if raw.isascii() and raw.isdigit() else None
    if number is None:
        raise InvalidRequestError("Invalid 'starting_after': expected a sequence number (an integer >= 0).",
                                  param="starting_after", code="invalid_value")
    return number


def _delete(response_id: str, key: Any) -> bool:
    return StoredResponse.objects.filter(pk=response_id, key=key).delete()[0] > 0


def _inputs(response_id: str, key: Any) -> list[dict[str, Any]] | None:
    found = StoredResponse.objects.for_key(response_id, key)
    if found is None:
        return None
    return [item.to_dict() for item in found.items.filter(side=Side.INPUT).order_by("position")]
