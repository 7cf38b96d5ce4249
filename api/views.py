"""The OpenAI-compatible endpoints: parse, authenticate (``api_view``), route and stream (``relay``), record."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpResponseBase, JsonResponse

from api import background, catalog, lists, relay
from api.decorators import ApiRequest, api_view
from bridge.errors import InvalidRequestError, NotFoundError
from bridge.validation import validate_chat, validate_responses
from plumbing import dbthread
from state.models import Side, StoredResponse
from upstreams.probe.discovery import ModelInfo


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    return await relay.answer(request, validate_chat(request.json), "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    body = validate_responses(request.json)
    plan = await relay.prepare(request, body, "responses")
    if plan.keeper is not None and plan.keeper.background:
        return await background.start(request, body, plan)
    return await relay.respond(request, body, plan)


@api_view("responses/{id}", body=False, methods=("GET", "DELETE"))
async def response_detail(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """``GET`` a stored response as it stands (``?stream=true``: a background one's events); ``DELETE`` it.

    A background response still running is cancelled before it is deleted: its task would
    otherwise store it again when it ends. An id the gateway does not hold may be an
    upstream's that keeps state itself (``held_upstream``).
    """
    async def local() -> HttpResponseBase:
        if request.method == "DELETE":
            found = await background.read(response_id, request.client_key)
            if found.running:
                await background.cancel(request, response_id)
            if not await dbthread.run(_delete, response_id, request.client_key):
                raise background.not_found(response_id)
            return JsonResponse({"id": response_id, "object": "response.deleted", "deleted": True})
        if request.GET.get("stream") == "true":
            return await background.resume(request, response_id, _starting_after(request))
        found = await background.read(response_id, request.client_key)
        return JsonResponse(found.to_dict())

    return await held_upstream(request, f"responses/{response_id}", local)


@api_view("responses/{id}/input_items", body=False, methods=("GET",))
async def input_items(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """List the input items of a stored response (its own request's, references resolved), paginated."""
    async def local() -> HttpResponseBase:
        items = await dbthread.run(_inputs, response_id, request.client_key)
        if items is None:
            raise background.not_found(response_id)
        return JsonResponse(lists.page(items, request))

    return await held_upstream(request, f"responses/{response_id}/input_items", local)


@api_view("responses/{id}/cancel", body=False, methods=("POST",))
async def cancel(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """Cancel a background response (wherever it runs) and return it; a finished one is returned as it is."""
    async def local() -> HttpResponseBase:
        return JsonResponse(await background.cancel(request, response_id))

    return await held_upstream(request, f"responses/{response_id}/cancel", local)


async def held_upstream(request: ApiRequest, endpoint: str,
                        local: Callable[[], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
    """Answer from the gateway's own store; for an id it does not hold, from an upstream that keeps state."""
    try:
        return await local()
    except NotFoundError:
        relayed = await relay.ask_state_keepers(request, endpoint)
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


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams serve: named, aliases, and what glob and catch-all ones report.

    ``context_window`` is added where the upstream's server reported one (not an OpenAI
    field; clients that do not know it ignore it).
    """
    seen: dict[str, dict[str, Any]] = {}
    ranked = sorted(request.upstreams, key=lambda u: (-u.priority, u.name))
    # The servers are asked at once: one that is slow to list costs its own wait, not the sum.
    listings = await asyncio.gather(*(catalog.reported(u, request.exchange.request_id) if u.serves_by_pattern
                                      else _nothing() for u in ranked))
    for upstream, listing in zip(ranked, listings, strict=True):
        reported = {m.id: m for m in listing}
        names = [*upstream.named_models, *upstream.aliases, *(n for n in reported if upstream.serves(n))]
        for name in names:
            entry = {"id": name, "object": "model", "created": 0, "owned_by": upstream.name}
            window = reported.get(upstream.upstream_model(name))
            if window is not None and window.context_window:
                entry["context_window"] = window.context_window
            seen.setdefault(name, entry)
    return JsonResponse({"object": "list", "data": list(seen.values())})


async def _nothing() -> list[ModelInfo]:
    return []


def _delete(response_id: str, key: Any) -> bool:
    return StoredResponse.objects.filter(pk=response_id, key=key).delete()[0] > 0


def _inputs(response_id: str, key: Any) -> list[dict[str, Any]] | None:
    found = StoredResponse.objects.for_key(response_id, key)
    if found is None:
        return None
    return [item.to_dict() for item in found.items.filter(side=Side.INPUT).order_by("position")]
