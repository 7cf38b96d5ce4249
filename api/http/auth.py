"""Who sent a request: its client key, checked against this process's routing copy; key guessing throttled.

An address that sends more than GATEWAY_AUTH_FAILURES_PER_MINUTE bad keys in a minute
(counted across processes in the shared cache) gets 429 for any key this process does not
already know, before any database lookup; the keys it knows are still served from there
(a NAT shared with a guesser).
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest
from django.utils import timezone

from bridge.errors import AuthenticationError, RateLimitError
from plumbing import dbthread, sharedstate
from plumbing.ratelimit import Rate, window
from upstreams.models import ClientKey, Upstream
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway")

# last_used is written at most this often per key, not on every request.
LAST_USED_EVERY = 60.0
_last_used_written: dict[int, float] = {}


class KeyRefused(AuthenticationError):
    """No key, an unknown, a revoked or an expired one (401); ``key``: the revoked or expired key, named on the row."""

    def __init__(self, message: str, key: ClientKey | None = None) -> None:
        super().__init__(message)
        self.key = key


async def authenticate(request: HttpRequest) -> tuple[ClientKey | None, list[Upstream]]:
    """Return the request's client key (None: anonymous, when allowed) and the enabled upstreams.

    Both come from this process's routing copy (upstreams/routing.py), which is read
    from the database at most once per GATEWAY_ROUTING_TTL. Raises KeyRefused, or
    RateLimitError for an address that keeps guessing keys.
    """
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    ip = request.META.get("REMOTE_ADDR", "-")
    if secret and ip in _guessing and not ROUTING.knows(secret):  # a dict miss for everyone else
        _refuse_if_guessing(ip)
    key, upstreams = await ROUTING.context(secret)
    if key is None and not settings.GATEWAY_ALLOW_ANONYMOUS:
        if not secret:
            raise KeyRefused("Missing client API key: send 'Authorization: Bearer <key>'.")
        await _count_bad_key(ip)
        try:
            revoked = await ROUTING.revoked_key(secret)  # no extra query with a routing copy
        except DatabaseError:
            revoked = None
        # Never echo the secret back: error messages end up in client logs.
        raise KeyRefused("Incorrect or revoked client API key.", revoked)
    if key is not None and key.expired(timezone.now()):
        raise KeyRefused(f"This client API key expired on {key.expires:%Y-%m-%d %H:%M} UTC.", key)
    if key is not None:
        await _touch(key)
    return key, upstreams


# Addresses that sent more bad keys than GATEWAY_AUTH_FAILURES_PER_MINUTE, until when (monotonic).
_guessing: dict[str, float] = {}
MAX_GUESSING = 10_000


def _refuse_if_guessing(ip: str) -> None:
    """Refuse (429) a key this process does not know from an address that has sent too many bad ones.

    Keys already known to the process are still served from that address (a NAT shared
    with a guesser); only unknown ones are refused, before any database lookup.
    """
    until = _guessing.get(ip)
    if until is None:
        return
    left = until - time.monotonic()
    if left <= 0:
        _guessing.pop(ip, None)
        return
    raise RateLimitError(f"Too many requests with incorrect API keys from this address; try again in "
                         f"{int(left) + 1}s.", headers={"retry-after": str(int(left) + 1)})


async def _count_bad_key(ip: str) -> None:
    """Count a bad key against its address's budget (shared by every process through the cache)."""
    limit = settings.GATEWAY_AUTH_FAILURES_PER_MINUTE
    if limit <= 0:
        return
    rate = Rate(count=limit, seconds=60)
    number, left = window(rate, time.time())
    try:
        count = await sharedstate.call(sharedstate.incr_or_start, f"authfail:{ip}:{number}", left + 1)
    except Exception:
        return  # fail open, as rate limits do (the breaker logs the outage)
    if count >= limit:
        if len(_guessing) >= MAX_GUESSING:
            _guessing.clear()
        _guessing[ip] = time.monotonic() + left


async def _touch(key: ClientKey) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(key.pk, -LAST_USED_EVERY) >= LAST_USED_EVERY:
        _last_used_written[key.pk] = now
        try:
            await dbthread.run(_write_last_used, key.pk)
        except DatabaseError:  # a bookkeeping write: it waits for the next minute, not the request
            logger.debug("last_used of key %s not written: the database is unavailable", key.pk)


def _write_last_used(pk: int) -> None:
    ClientKey.objects.filter(pk=pk).update(last_used=timezone.now())
