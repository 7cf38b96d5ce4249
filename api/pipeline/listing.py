"""What the upstreams serve, as their servers list it: the models a key may use, with what is known of each.

A catch-all upstream names no model, so ``/v1/models`` listed nothing for it and clients
could not discover what to ask for (issue 13). Its own ``/models`` is asked, at most once per
CACHE_SECONDS per upstream and process (a failure is remembered as long: a server without
the route is not asked on every listing), within ASK_SECONDS. ``/v1/models``, Codex's model
catalog and the compaction's chunking (the model's window) read it.
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson

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


async def served(upstreams: list[Upstream], request_id: str) -> list[ServedModel]:
    """The models ``upstreams`` serve, best upstream first (glob and catch-all servers asked at once)."""
    # The servers are asked at once: one that is slow to list costs its own wait, not the sum.
    listings = await asyncio.gather(*(reported(u, request_id) for u in upstreams))
    windows = {u.pk: {m.id: m.context_window for m in listing} for u, listing in zip(upstreams, listings, strict=True)}
    return catalog.served(upstreams, windows)


async def profiles() -> list[ModelProfile]:
    """The model profiles (the admin's), read from the database."""
    return await dbthread.run(lambda: list(ModelProfile.objects.all()))


async def window_of(upstream: Upstream, model: str, request_id: str) -> int | None:
    """The context window of ``model`` on ``upstream``: its profile's, else what the server reports."""
    reported_window = next((m.context_window for m in await reported(upstream, request_id)
                            if m.id == upstream.upstream_model(model)), None)
    known = ServedModel(model, upstream, reported_window)
    return catalog.context_window(known, catalog.profile_for(model, await profiles()))
