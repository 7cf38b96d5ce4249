"""What every API request reads before it can be routed: the enabled upstreams and its client key.

Reading them from the database on every request cost a trip to a database thread and
two queries per request, about a quarter of the gateway's CPU on a bridged stream
(bench/). They are kept in memory instead, for GATEWAY_ROUTING_TTL seconds:

- An edit saved in this process (the admin) drops the copy at once (``post_save`` and
  ``post_delete`` signals); other processes see it within the TTL.
- A secret not in the copy is looked up in the database, so a key created a moment ago
  by ``createapikey`` works at once. The keys seen so far are read again with the
  upstreams, in the same trip: a revoked key outlives its revocation by the TTL at most.
- A model no enabled upstream serves reloads the upstreams once before the request is
  refused, so a new upstream serves at once too.

GATEWAY_ROUTING_TTL=0 reads both from the database on every request, in one trip.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from upstreams import dbthread
from upstreams.models import ClientKey, Upstream, hash_secret


@dataclass
class Snapshot:
    """The enabled upstreams and the active keys seen so far, as read at ``loaded_at``."""

    upstreams: list[Upstream]
    loaded_at: float
    keys: dict[str, ClientKey] = field(default_factory=dict)  # by hashed secret


class Routing:
    """This process's copy of the routing data; one per process (``ROUTING``)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.generation = 0  # bumped by every local edit; a load begun before one is not kept
        self._loading: asyncio.Future[Snapshot] | None = None
        self._looking: dict[str, asyncio.Future[ClientKey | None]] = {}  # secrets being looked up, by hash

    def invalidate(self, **_: Any) -> None:
        """Forget the copy (a signal receiver: called from whichever thread saved the row)."""
        self.generation += 1
        self.snapshot = None

    async def context(self, secret: str) -> tuple[ClientKey | None, list[Upstream]]:
        """Return the active key ``secret`` belongs to (None if none) and the enabled upstreams."""
        ttl = settings.GATEWAY_ROUTING_TTL
        if ttl <= 0:
            return await dbthread.run(_load_context, secret)
        snapshot = self.snapshot
        if snapshot is None or time.monotonic() - snapshot.loaded_at >= ttl:
            snapshot = await self.reload()
        if not secret:
            return None, snapshot.upstreams
        hashed = hash_secret(secret)
        key = snapshot.keys.get(hashed)
        if key is None:
            key = await self._look_up(secret, hashed)
            if key is not None:
                snapshot.keys[hashed] = key
        return key, snapshot.upstreams

    async def _look_up(self, secret: str, hashed: str) -> ClientKey | None:
        """Return the active key of ``secret`` from the database; concurrent asks for one secret share a read."""
        if hashed not in self._looking:
            self._looking[hashed] = asyncio.ensure_future(dbthread.run(_load_key, secret))
            self._looking[hashed].add_done_callback(lambda _: self._looking.pop(hashed, None))
        return await asyncio.shield(self._looking[hashed])

    async def reload(self) -> Snapshot:
        """Read the upstreams again; requests that ask meanwhile share the one read."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(self._loaded)
        return await asyncio.shield(self._loading)

    async def fresh_upstreams(self, upstreams: list[Upstream]) -> list[Upstream] | None:
        """Return the upstreams newer than ``upstreams`` (a request's), read again if need be.

        None when ``upstreams`` were read for this very request (GATEWAY_ROUTING_TTL=0).
        """
        if settings.GATEWAY_ROUTING_TTL <= 0:
            return None
        snapshot = self.snapshot
        if snapshot is not None and snapshot.upstreams is not upstreams:
            return snapshot.upstreams
        return (await self.reload()).upstreams

    async def _load(self) -> Snapshot:
        generation = self.generation
        started = time.monotonic()
        seen = list(self.snapshot.keys) if self.snapshot is not None else []
        upstreams, keys = await dbthread.run(_load_routing, seen)
        snapshot = Snapshot(upstreams, loaded_at=started, keys=keys)
        if generation == self.generation:  # no edit landed while reading: keep it
            self.snapshot = snapshot
        return snapshot

    def _loaded(self, _: asyncio.Future[Snapshot]) -> None:
        self._loading = None


def _load_context(secret: str) -> tuple[ClientKey | None, list[Upstream]]:
    return _load_key(secret) if secret else None, _load_upstreams()


def _load_key(secret: str) -> ClientKey | None:
    return ClientKey.objects.for_secret(secret)


def _load_upstreams() -> list[Upstream]:
    return list(Upstream.objects.filter(enabled=True))


def _load_routing(seen: list[str]) -> tuple[list[Upstream], dict[str, ClientKey]]:
    """Return the enabled upstreams, and those of the ``seen`` hashed secrets still active."""
    keys = ClientKey.objects.filter(hashed__in=seen, active=True) if seen else []
    return _load_upstreams(), {key.hashed: key for key in keys}


ROUTING = Routing()


def connect_signals() -> None:
    """Drop the copy whenever this process saves or deletes an upstream or a key (AppConfig.ready)."""
    for model in (Upstream, ClientKey):
        post_save.connect(ROUTING.invalidate, sender=model, dispatch_uid=f"routing-{model.__name__}-save")
        post_delete.connect(ROUTING.invalidate, sender=model, dispatch_uid=f"routing-{model.__name__}-delete")
