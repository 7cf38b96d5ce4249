"""The OpenAI-compatible endpoints: parse, authenticate (``api_view``), route and stream (``relay``), record."""
from __future__ import annotations

from django.http import HttpResponseBase, JsonResponse

from api import relay
from api.decorators import ApiRequest, api_view
from bridge.validation import validate_chat, validate_responses


@api_view("chat/completions")
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    return await relay.answer(request, validate_chat(request.json), "chat/completions")


@api_view("responses")
async def responses(request: ApiRequest) -> HttpResponseBase:
    return await relay.answer(request, validate_responses(request.json), "responses")


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams name (globs are patterns, not models) and their aliases."""
    seen: dict[str, str] = {}
    for upstream in sorted(request.upstreams, key=lambda u: (-u.priority, u.name)):
        for name in [*upstream.named_models, *upstream.aliases]:
            seen.setdefault(name, upstream.name)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in seen.items()]
    return JsonResponse({"object": "list", "data": data})
