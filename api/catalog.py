"""What the upstreams with globs or no model list (catch-alls) report they serve, for ``GET /v1/models``.

A catch-all upstream names no model, so ``/v1/models`` listed nothing for it and clients
could not discover what to ask for (issue 13). Its own ``/models`` is asked, at most once per
CACHE_SECONDS per upstream and process (a failure is remembered as long: a server without
the route is not asked on every listing), within ASK_SECONDS.
"""
from __future__ import annotations

import asyncio
import logging
import time

import orjson

from api import client
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
