"""Django's cache as the request path uses it (rate-limit counters, cool-downs): one instance, off the ORM queue.

- One instance per process. ``django.core.cache.cache`` is an instance per asyncio task
  (Django keeps caches in a context-local store and closes them on ``request_finished``),
  and with Redis each instance opens its own connection pool: a new Redis connection per
  request. Both backends the gateway uses are thread-safe, so one instance serves all.
- Never queued behind the ORM. Django's async cache methods run the sync ones through
  ``sync_to_async`` on the single thread that also runs every ORM query. Local memory
  answers in microseconds: call it inline. A network cache (Redis) blocks for a round
  trip: run it on the thread pool, where calls run side by side and the loop stays free.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")
_shared: BaseCache | None = None


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
    return await sync_to_async(partial(method, *args, **kwargs), thread_sensitive=False)()


def incr_or_start(key: str, timeout: int) -> int:
    """Add one to ``key``, creating it with ``timeout`` when missing; sync, for ``call``."""
    shared = cache()
    try:
        return shared.incr(key)
    except ValueError:  # the first of its window
        return 1 if shared.add(key, 1, timeout=timeout) else shared.incr(key)
