"""The database threads of the request path: long-lived, each with one kept connection.

Under ASGI, Django runs every ``thread_sensitive`` ORM call of a request in a thread made
for that request. A kept connection (CONN_MAX_AGE > 0) then leaks with each thread,
and a dropped one costs a reconnect per request (bench/: 472 open SQLite handles at
concurrency 50). The two queries every API request needs (its key and the upstreams) and
the batched audit writes run here instead: a fixed pool of threads whose connections
live as long as the process and are reopened only when they break.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

T = TypeVar("T")

# Two: a read for one request need not wait behind another request's audit batch.
WORKERS = 2
EXECUTOR = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="gateway-db")


def _call(func: Callable[..., T], *args: Any) -> T:
    try:
        return func(*args)
    except DatabaseError:
        # A broken connection (database restarted, network blip): drop it and try once more.
        if all(conn.is_usable() for conn in connections.all(initialized_only=True)):
            raise
        for conn in connections.all(initialized_only=True):
            conn.close()
        return func(*args)


async def run(func: Callable[..., T], *args: Any) -> T:
    """Return ``func(*args)`` run on a database thread of the request path."""
    return await sync_to_async(_call, thread_sensitive=False, executor=EXECUTOR)(func, *args)


def close_connections(timeout: float = 10.0) -> None:
    """Close the connections the database threads keep (sync; e.g. before a test database is dropped).

    Each thread has its own connection, so each must close its own: a barrier holds the
    first job until every thread has one.
    """
    barrier = threading.Barrier(WORKERS, timeout=timeout)

    def close() -> None:
        barrier.wait()
        connections.close_all()

    wait([EXECUTOR.submit(close) for _ in range(WORKERS)], timeout=timeout)
