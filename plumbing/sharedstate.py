"""Django's cache as the request path uses it (rate-limit counters, cool-downs): one instance, off the ORM queue.

- One instance per process. ``django.core.cache.cache`` is an instance per asyncio task
  (Django keeps caches in a context-local store and closes them on ``request_finished``),
  and with Redis each instance opens its own connection pool: a new Redis connection per
  request. Both backends the gateway uses are thread-safe, so one instance serves all.
- Never queued behind the ORM. Django's async cache methods run the sync ones through
  ``sync_to_async`` on the single thread that also runs every ORM query. Local memory
  answers in microseconds: call it inline. A network cache (Redis) blocks for a round
  trip: run it on the thread pool, where calls run side by side and the loop stays free.
- Never waited on when it is sick. A Redis that is down or frozen answers nothing: every
  request used to wait out redis-py's timeout, twice (5-10 s each, issue 12). Its reads
  time out after GATEWAY_REDIS_TIMEOUT (0.1 s, settings), and one failure opens a breaker:
  for BREAKER_SECONDS every call fails at once without trying, then one call (and only
  one) tries again. Callers fail open (rate limits not enforced, cool-downs not shared).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")
_shared: BaseCache | None = None
logger = logging.getLogger("gateway")
BREAKER_SECONDS = 5.0


class SharedStateUnavailable(RuntimeError):
    """The shared cache failed a moment ago: it is not asked again until the breaker lets one call try."""


class Breaker:
    """Open after a failure: calls are refused for ``seconds``, then one call tries; its success closes it."""

    def __init__(self, seconds: float = BREAKER_SECONDS) -> None:
        self.seconds = seconds
        self.open_until = 0.0
        self.trying = False  # the one call let through after the wait

    def allow(self) -> bool:
        if self.open_until == 0.0:
            return True
        if self.trying or time.monotonic() < self.open_until:
            return False
        self.trying = True
        return True

    def succeeded(self) -> None:
        if self.open_until:
            logger.warning("the shared cache (Redis) answers again")
        self.open_until, self.trying = 0.0, False

    def failed(self, exc: BaseException) -> None:
        if not self.open_until or self.trying:
            logger.warning("the shared cache (Redis) failed (%s); not asked again for %.0f s",
                           type(exc).__name__, self.seconds)
        self.open_until, self.trying = time.monotonic() + self.seconds, False


BREAKER = Breaker()


def cache() -> BaseCache:
    """Return this process's instance of the default cache, shared by every task and thread."""
    global _shared
    if _shared is None:
        _shared = caches.create_connection("default")
    return _shared


async def call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return ``method(*args, **kwargs)``, a bound method of ``cache()`` (or a function using it)."""
    if isinstance(cache(), LocMemCache):
        return method(*args, **kwargs)
    if not BREAKER.allow():
        raise SharedStateUnavailable("the shared cache failed a moment ago")
    try:
        result = await sync_to_async(partial(method, *args, **kwargs), thread_sensitive=False)()
    except Exception as exc:
        BREAKER.failed(exc)
        raise
    BREAKER.succeeded()
    return result


def incr_or_start(key: str, timeout: int) -> int:
    """Add one to ``key``, creating it with ``timeout`` when missing; sync, for ``call``."""
    shared = cache()
    try:
        return shared.incr(key)
    except ValueError:  # the first of its window
        return 1 if shared.add(key, 1, timeout=timeout) else shared.incr(key)
