"""``GET /v1/models`` (OpenAI's list) and ``GET /v1/codex/models`` (Codex's catalog): the models a key may use.

What they are, and what is known of each, is api/pipeline/listing.py's and upstreams/catalog.py's.
"""
from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase

from api.http.answers import JsonAnswer
from api.http.endpoint import ApiRequest, api_view
from api.pipeline import listing
from upstreams import catalog


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams serve: named, aliases, and what glob and catch-all ones report.

    Asked by Codex (``?client_version=``, what it appends to a catalog URL), the answer is
    Codex's catalog instead. ``context_window`` is added where it is known (not an OpenAI
    field; clients that do not know it ignore it).
    """
    if "client_version" in request.GET:
        return await _codex_catalog(request)
    profiles = await listing.profiles()
    data = []
    for model in await _served(request):
        entry: dict[str, Any] = {"id": model.name, "object": "model", "created": 0, "owned_by": model.upstream.name}
        window = catalog.context_window(model, catalog.profile_for(model.name, profiles))
        if window:
            entry["context_window"] = window
        data.append(entry)
    return JsonAnswer.of({"object": "list", "data": data})


@api_view("codex/models", body=False)
async def codex_models(request: ApiRequest) -> HttpResponseBase:
    """Codex's model catalog (its ``model_catalog_url``): an entry for each model this key may use."""
    return await _codex_catalog(request)


async def _codex_catalog(request: ApiRequest) -> JsonAnswer:
    return JsonAnswer.of(catalog.codex_catalog(await _served(request), await listing.profiles()))


async def _served(request: ApiRequest) -> list[catalog.ServedModel]:
    """The models the upstreams serve that the request's key may use (its scope)."""
    key = request.client_key
    served = await listing.served(request.upstreams, request.exchange.request_id)
    return served if key is None else [model for model in served if key.allows(model.name)]
