"""The wait between two chunks of an upstream's answer, kept apart from the wait for its first byte.

httpx has one read timeout, and httpcore fixes it for a whole body when the body starts, so
it cannot be long for the first byte (a long prompt's prefill on a local server takes
minutes) and short between chunks. The upstream's ``first_byte_timeout`` is httpx's read
timeout; this watch enforces ``read_timeout`` between chunks: once a second it looks at how
many bytes each open answer has downloaded, and closes one that has not moved for longer
than that, once it started. Its reader then fails as the upstream's timeout (``silenced``).
Nothing is paid per read: a timer per read (``async with asyncio.timeout``) costs 4.7 us
per chunk on top of the one httpcore already sets (200,000 awaits timed with and without it,
CPython 3.11, this machine, 2026-12-07), 0.5 ms on a 100-chunk answer.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass

import httpx

logger = logging.getLogger("gateway")

TICK = 1.0  # seconds between two looks: a silence is cut between read_timeout and a second more


@dataclass
class _Watched:
    limit: float  # seconds of silence allowed once the first byte came
    count: int  # bytes downloaded when last seen
    since: float  # when that count was first seen (loop time)


class SilenceWatch:
    """This process's open upstream answers, each cut when silent for longer than its limit mid-body."""

    def __init__(self) -> None:
        self._watched: weakref.WeakKeyDictionary[httpx.Response, _Watched] = weakref.WeakKeyDictionary()
        self._silenced: weakref.WeakKeyDictionary[httpx.Response, float] = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None

    def watch(self, response: httpx.Response, limit: float) -> None:
        """Cut ``response`` if, once its body started, no byte comes for ``limit`` seconds (0: never)."""
        if limit <= 0:
            return
        loop = asyncio.get_running_loop()
        self._watched[response] = _Watched(limit, 0, loop.time())
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())

    def silenced(self, response: httpx.Response) -> float | None:
        """The limit ``response`` was cut for, if this watch cut it: a read error on it is the upstream's timeout."""
        return self._silenced.get(response)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watched:
            await asyncio.sleep(TICK)
            now = loop.time()
            for response, seen in list(self._watched.items()):
                if response.is_closed:
                    self._watched.pop(response, None)
                    continue
                count = response.num_bytes_downloaded
                if count != seen.count:
                    seen.count, seen.since = count, now
                elif count and now - seen.since >= seen.limit:
                    self._watched.pop(response, None)
                    self._silenced[response] = seen.limit
                    logger.info("closing an upstream answer silent for %.0fs", now - seen.since)
                    await response.aclose()


SILENCE = SilenceWatch()  # this process's watch
