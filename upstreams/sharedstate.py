"""Calls to Django's cache (rate-limit counters, cool-downs) that never queue behind the ORM.

Django's async cache methods run the sync ones through ``sync_to_async`` on the single
thread that also runs every ORM query, so each call waits in that one queue. Local memory
answers in microseconds: call it inline. A network cache (Redis) blocks for a round
trip: run it on the thread pool, where calls run side by side and the loop stays free.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")


async def call(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return ``method(*args, **kwargs)``, a bound method of the default cache."""
    if isinstance(caches["default"], LocMemCache):
        return method(*args, **kwargs)
    return await sync_to_async(partial(method, *args, **kwargs), thread_sensitive=False)()


def incr_or_start(key: str, timeout: int) -> int:
    """Add one to ``key``, creating it with ``timeout`` when missing; sync, for ``call``."""
    cache = caches["default"]
    try:
        return cache.incr(key)
    except ValueError:  # the first of its window
        return 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
