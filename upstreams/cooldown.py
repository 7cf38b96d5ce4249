"""Skip an upstream endpoint that keeps failing, for a short while, across every worker.

State lives in Django's cache (Redis when configured), per upstream *and* endpoint: a
broken /responses must not take /chat/completions of the same server down with it
(one failing endpoint cooling the whole upstream is a bug other gateways had).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings

from bridge.dialects import DIALECTS
from plumbing import sharedstate
from upstreams.models import Upstream

logger = logging.getLogger("gateway")
T = TypeVar("T")


def _tolerant(default: Any) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Let a cache outage cost the cool-down, never the request."""

    def decorate(func: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return await func(*args, **kwargs)
            except sharedstate.SharedStateUnavailable:
                return default  # the breaker said so once already
            except Exception as exc:
                logger.warning("cool-down state unavailable, the cache failed: %s", type(exc).__name__)
                return default

        return wrapper

    return decorate


def _keys(upstream: Upstream, endpoint: str) -> tuple[str, str]:
    # The creation time keeps a deleted-and-recreated upstream (same pk) from inheriting state.
    base = f"cooldown:{upstream.pk}:{upstream.created.timestamp():.0f}:{endpoint}"
    return f"{base}:failures", f"{base}:until"


@_tolerant(default=(set(), set()))
async def health(routes: list[tuple[Upstream, str]]) -> tuple[set[int], set[int]]:
    """Return the ids of the upstreams whose endpoint is cooling down, and of those with recent failures.

    ``routes`` pairs each upstream with the endpoint it would be sent to: a Responses
    upstream and a Chat-only one are judged on different endpoints for the same request.
    One cache round trip for the whole list: this runs on every request.
    """
    if not routes:
        return set(), set()
    keys = {}
    for upstream, endpoint in routes:
        failures_key, until_key = _keys(upstream, endpoint)
        keys[failures_key], keys[until_key] = ("failing", upstream.pk), ("cooling", upstream.pk)
    values = await sharedstate.call(sharedstate.cache().get_many, list(keys))
    now = time.time()
    cooling = {keys[k][1] for k, v in values.items() if keys[k][0] == "cooling" and v and v > now}
    failing = {keys[k][1] for k, v in values.items() if keys[k][0] == "failing" and v}
    return cooling, failing


@_tolerant(default=None)
async def record_failure(upstream: Upstream, endpoint: str) -> None:
    failures_key, until_key = _keys(upstream, endpoint)
    failures = await sharedstate.call(sharedstate.incr_or_start, failures_key, settings.GATEWAY_COOLDOWN_SECONDS * 4)
    if failures >= settings.GATEWAY_COOLDOWN_AFTER:
        seconds = settings.GATEWAY_COOLDOWN_SECONDS
        await sharedstate.call(sharedstate.cache().set, until_key, time.time() + seconds, timeout=seconds)
        await sharedstate.call(sharedstate.cache().delete, failures_key)


@_tolerant(default=None)
async def record_success(upstream: Upstream, endpoint: str) -> None:
    await sharedstate.call(sharedstate.cache().delete, _keys(upstream, endpoint)[0])


def status(upstream: Upstream) -> dict[str, int]:
    """Return the endpoints of ``upstream`` cooling down, with the seconds left (for the admin)."""
    now = time.time()
    left = {}
    for endpoint in sorted({dialect.endpoint for dialect in DIALECTS.values()}):
        until = sharedstate.cache().get(_keys(upstream, endpoint)[1])
        if until and until > now:
            left[endpoint] = int(until - now) + 1
    return left
