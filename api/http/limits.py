"""Each client key's rate limit (GATEWAY_RATE_LIMIT by default): a fixed window in the shared cache."""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import HttpRequest

from bridge.errors import RateLimitError
from plumbing import sharedstate
from plumbing.ratelimit import Rate, Verdict, parse_rate, verdict, window
from upstreams.models import ClientKey

logger = logging.getLogger("gateway")


async def enforce_rate_limit(request: HttpRequest, key: ClientKey | None) -> Verdict | None:
    """Count this request against its key's budget (anonymous ones: their IP's); raise 429 when spent.

    A fixed window in Django's cache: one INCR per request, shared by every worker that
    shares the cache. Bursts of up to twice the rate can straddle a window boundary.
    """
    rate = _rate_for(key)
    if rate is None:
        return None
    now = time.time()
    number, left = window(rate, now)
    who = f"key:{key.pk}" if key else f"ip:{request.META.get('REMOTE_ADDR', '-')}"
    counter = f"ratelimit:{who}:{rate.seconds}:{number}"
    try:
        count = await sharedstate.call(sharedstate.incr_or_start, counter, left + 1)
    except sharedstate.SharedStateUnavailable:
        return None  # fail open; the breaker logged the outage once
    except Exception as exc:
        # Fail open: a cache outage must not take the API down with it (readyz reports it).
        logger.warning("rate limit not enforced, the cache failed: %s", type(exc).__name__)
        return None
    judged = verdict(rate, count, now)
    if not judged.allowed:
        raise RateLimitError(f"Rate limit reached for this key ({rate.count} requests per {rate.seconds}s); "
                             f"try again in {judged.reset}s.", headers=judged.headers())
    return judged


def _rate_for(key: ClientKey | None) -> Rate | None:
    for text in (key.rate_limit if key else "", settings.GATEWAY_RATE_LIMIT):
        try:
            rate = parse_rate(text)
        except ValueError:
            logger.error("ignoring the bad rate limit %r of key %s", text, key)
            continue
        if rate is not None:
            return rate
    return None
