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
from upstreams.models import Upstream
from upstreams.probe.discovery import ModelInfo, read_models

logger = logging.getLogger("gateway")

CACHE_SECONDS = 60.0
ASK_SECONDS = 5.0
_reported: dict[tuple[int, str], tuple[float, list[ModelInfo]]] = {}


async def reported(upstream: Upstream, request_id: str) -> list[ModelInfo]:
    """The models ``upstream``'s server lists, from this process's copy when it is fresh."""
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


@api_view("models", body=False)
async def models(request: ApiRequest) -> HttpResponseBase:
    """List the models the enabled upstreams serve: named, aliases, and what glob and catch-all ones report.

    ``context_window`` is added where the upstream's server reported one (not an OpenAI
    field; clients that do not know it ignore it).
    """
    seen: dict[str, dict[str, Any]] = {}
    ranked = sorted(request.upstreams, key=lambda u: (-u.priority, u.name))
    # The servers are asked at once: one that is slow to list costs its own wait, not the sum.
    listings = await asyncio.gather(*(reported(u, request.exchange.request_id) if u.serves_by_pattern
                                      else _nothing() for u in ranked))
    for upstream, listing in zip(ranked, listings, strict=True):
        reported_models = {m.id: m for m in listing}
        names = [*upstream.named_models, *upstream.aliases, *(n for n in reported_models if upstream.serves(n))]
        for name in names:
            entry = {"id": name, "object": "model", "created": 0, "owned_by": upstream.name}
            window = reported_models.get(upstream.upstream_model(name))
            if window is not None and window.context_window:
                entry["context_window"] = window.context_window
            seen.setdefault(name, entry)
    return JsonAnswer.of({"object": "list", "data": list(seen.values())})


async def _nothing() -> list[ModelInfo]:
    return []
