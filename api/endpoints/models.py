"""``GET /v1/models``: the models the enabled upstreams serve, and what glob and catch-all ones report they serve.

A catch-all upstream names no model, so ``/v1/models`` listed nothing for it and clients
could not discover what to ask for (issue 13). Its own ``/models`` is asked, at most once per
CACHE_SECONDS per upstream and process (a failure is remembered as long: a server without
the route is not asked on every listing), within ASK_SECONDS.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from django.http import HttpResponseBase

from api.http.answers import JsonAnswer
from api.http.endpoint import ApiRequest, api_view
from api.pipeline import client
from bridge.errors import UpstreamError
from plumbing import dbthread
from upstreams import catalog
from upstreams.catalog import ServedModel
from upstreams.models import ModelProfile, Upstream
from upstreams.probe.discovery import ModelInfo, read_models

logger = logging.getLogger("gateway")

CACHE_SECONDS = 60.0
ASK_SECONDS = 5.0
_reported: dict[tuple[int, str], tuple[float, list[ModelInfo]]] = {}


async def reported(upstream: Upstream, request_id: str) -> list[ModelInfo]:
    """The models ``upstream``'s server lists, from this process's copy when it is fresh.

    Only glob and catch-all upstreams are asked: a named model needs no listing (and one
    window fewer is known for it: set it in a model profile).
    """
    if not upstream.serves_by_pattern:
        return []
    key = (upstream.pk, upstream.api_base)
    cached = _reported.get(key)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    models: list[ModelInfo] = []
    try:
        async with asyncio.timeout(ASK_SECONDS):
            response = await client.send(upstream, "models", None, request_id, method="GET")
            try:
                raw = await response.aread()
            finally:
                await response.aclose()
        if response.status_code == 200:
            models = read_models(orjson.loads(raw))
    except (UpstreamError, TimeoutError, orjson.JSONDecodeError) as exc:
        logger.info("upstream %s did not list its models (%s)", upstream.name, type(exc).__name__)
    _reported[key] = (time.monotonic(), models)
    return models


async def _served(request: ApiRequest) -> list[ServedModel]:
    """The models this request's key may use, best upstream first (glob and catch-all servers asked at once)."""
    upstreams = request.upstreams
    # The servers are asked at once: one that is slow to list costs its own wait, not the sum.
    listings = await asyncio.gather(*(reported(u, request.exchange.request_id) for u in upstreams))
    windows = {u.pk: {m.id: m.context_window for m in listing} for u, listing in zip(upstreams, listings, strict=True)}
    return catalog.served(upstreams, windows)


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams serve: named, aliases, and what glob and catch-all ones report.

    Asked by Codex (``?client_version=``, what it appends to a catalog URL), the answer is
    Codex's catalog instead. ``context_window`` is added where it is known (not an OpenAI
    field; clients that do not know it ignore it).
    """
    if "client_version" in request.GET:
        return await _codex_catalog(request)
    profiles = await dbthread.run(_profiles)
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
    return JsonAnswer.of(catalog.codex_catalog(await _served(request), await dbthread.run(_profiles)))


def _profiles() -> list[ModelProfile]:
    return list(ModelProfile.objects.all())
