"""The OpenAI-compatible endpoints: parse, authenticate (``api_view``), route and stream (``relay``), record."""
from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase, JsonResponse

from api import lists, relay
from api.decorators import ApiRequest, api_view
from bridge.errors import InvalidRequestError, NotFoundError
from bridge.validation import validate_chat, validate_responses
from plumbing import dbthread
from state.models import Side, StoredResponse


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    return await relay.answer(request, validate_chat(request.json), "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    return await relay.answer(request, validate_responses(request.json), "responses")


@api_view("responses/{id}", body=False, methods=("GET", "DELETE"))
async def response_detail(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """``GET`` a stored response as it finished; ``DELETE`` it with its items."""
    if request.method == "DELETE":
        if not await dbthread.run(_delete, response_id, request.client_key):
            raise _not_found(response_id)
        return JsonResponse({"id": response_id, "object": "response.deleted", "deleted": True})
    found = await dbthread.run(StoredResponse.objects.for_key, response_id, request.client_key)
    if found is None:
        raise _not_found(response_id)
    return JsonResponse(found.to_dict())


@api_view("responses/{id}/input_items", body=False, methods=("GET",))
async def input_items(request: ApiRequest, response_id: str) -> HttpResponseBase:
    """List the input items of a stored response (its own request's, references resolved), paginated."""
    items = await dbthread.run(_inputs, response_id, request.client_key)
    if items is None:
        raise _not_found(response_id)
    return JsonResponse(lists.page(items, request))


@api_view("responses/{id}/cancel", body=False, methods=("POST",))
async def cancel(request: ApiRequest, response_id: str) -> HttpResponseBase:
    if await dbthread.run(StoredResponse.objects.for_key, response_id, request.client_key) is None:
        raise _not_found(response_id)
    raise InvalidRequestError("Only responses created with `background: true` can be cancelled; this one was "
                              "answered in the foreground.", code="not_cancellable")


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams name (globs are patterns, not models) and their aliases."""
    seen: dict[str, str] = {}
    for upstream in sorted(request.upstreams, key=lambda u: (-u.priority, u.name)):
        for name in [*upstream.named_models, *upstream.aliases]:
            seen.setdefault(name, upstream.name)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in seen.items()]
    return JsonResponse({"object": "list", "data": data})


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


def _delete(response_id: str, key: Any) -> bool:
    return StoredResponse.objects.filter(pk=response_id, key=key).delete()[0] > 0


def _inputs(response_id: str, key: Any) -> list[dict[str, Any]] | None:
    found = StoredResponse.objects.for_key(response_id, key)
    if found is None:
        return None
    return [item.to_dict() for item in found.items.filter(side=Side.INPUT).order_by("position")]
