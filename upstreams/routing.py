"""What every API request reads before it can be routed: the enabled upstreams, its client key, the prices.

Reading them from the database on every request costs a trip to a database thread and
two queries per request: with GATEWAY_ROUTING_TTL=0 a bridged stream takes 1.25x the
gateway CPU at 50 concurrent streams and 1.26x at 1, and 0.78x the requests per second
at 50 (bench --compare, 5 interleaved rounds, 2026-12-01, commit 69d68af).
They are kept in memory instead, for GATEWAY_ROUTING_TTL seconds:

- An edit saved in this process (the admin) drops the copy at once (``post_save`` and
  ``post_delete`` signals); other processes see it within the TTL.
- A secret not in the copy is looked up in the database, so a key created a moment ago
  by ``createapikey`` works at once. The keys seen so far are read again with the
  upstreams, in the same trip: a revoked key outlives its revocation by the TTL at most.
- A secret that is no key's is remembered as such until the next copy: retrying it costs
  no query.
- A model no enabled upstream serves reloads the upstreams once before the request is
  refused, so a new upstream serves at once too.

GATEWAY_ROUTING_TTL=0 reads both from the database on every request, in one trip.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError
from django.db.models.signals import post_delete, post_save

from plumbing import dbthread
from upstreams.models import ClientKey, Price, Team, Upstream, best_for, hash_secret

T = TypeVar("T")
MAX_UNKNOWN = 10_000
logger = logging.getLogger("gateway")


@dataclass
class Snapshot:
    """The enabled upstreams and the active keys seen so far, as read at ``loaded_at``."""

    upstreams: list[Upstream]
    loaded_at: float
    keys: dict[str, ClientKey] = field(default_factory=dict)  # by hashed secret
    # Secrets looked up and found to be no active key's: asked again only with the next copy
    # (TTL), so a client retrying a bad key costs no query each time; the value is the revoked
    # key the secret belongs to, if any (named on the refused request's row). Bounded: cleared when full.
    unknown: dict[str, ClientKey | None] = field(default_factory=dict)


class Routing:
    """This process's copy of the routing data; one per process (``ROUTING``)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.generation = 0  # bumped by every local edit; a load begun before one is not kept
        self._pending: dict[str, asyncio.Future[Any]] = {}  # reads under way: "upstreams" or a hashed secret
        self.failed_at = 0.0  # when reading the copy last failed (monotonic); 0: it did not
        self.prices: list[Price] = []  # as last read, with the upstreams (GATEWAY_ROUTING_TTL=0: by each request)
        self.busy: dict[int, int] = {}  # requests in flight at each upstream (by pk), in this process

    def take(self, pk: int) -> None:
        """One more request in flight at upstream ``pk``."""
        self.busy[pk] = self.busy.get(pk, 0) + 1

    def idle(self, pk: int) -> None:
        """One request fewer in flight at upstream ``pk``."""
        left = self.busy.get(pk, 0) - 1
        if left > 0:
            self.busy[pk] = left
        else:
            self.busy.pop(pk, None)

    def invalidate(self, **_: Any) -> None:
        """Forget the copy (a signal receiver: called from whichever thread saved the row)."""
        self.generation += 1
        self.snapshot = None

    async def context(self, secret: str) -> tuple[ClientKey | None, list[Upstream]]:
        """Return the active key ``secret`` belongs to (None if none) and the enabled upstreams."""
        ttl = settings.GATEWAY_ROUTING_TTL
        if ttl <= 0:
            key, upstreams, self.prices = await dbthread.run(_load_context, secret)
            return key, upstreams
        snapshot = self.snapshot
        now = time.monotonic()
        if snapshot is None or (now - snapshot.loaded_at >= ttl and now - self.failed_at >= ttl):
            snapshot = await self._reload_or_keep(snapshot)
        if not secret:
            return None, snapshot.upstreams
        hashed = hash_secret(secret)
        key = snapshot.keys.get(hashed)
        if key is None and hashed not in snapshot.unknown:
            if self.failed_at:  # the database is away: a key not in the copy cannot be checked
                raise DatabaseError("a key not in the routing copy, with the database unavailable")
            found = await self._shared(hashed, lambda: dbthread.run(_load_key, secret))
            if found is not None and found.active:
                key = snapshot.keys[hashed] = found
            else:
                if len(snapshot.unknown) >= MAX_UNKNOWN:
                    snapshot.unknown.clear()
                snapshot.unknown[hashed] = found
        return key, snapshot.upstreams

    def price(self, model: str) -> Price | None:
        """The price of ``model`` (a name, else the longest glob matching it) as last read; None: unpriced."""
        price: Price | None = best_for(model, self.prices)
        return price

    async def revoked_key(self, secret: str) -> ClientKey | None:
        """Return the revoked key ``secret`` belongs to, if any: from the copy (no query), else the database."""
        if settings.GATEWAY_ROUTING_TTL <= 0:
            return await dbthread.run(ClientKey.objects.revoked_for_secret, secret)
        snapshot = self.snapshot
        return snapshot.unknown.get(hash_secret(secret)) if secret and snapshot is not None else None

    def knows(self, secret: str) -> bool:
        """Whether ``secret`` is a key of this process's copy (no database trip)."""
        return self.cached_key(secret) is not None

    def cached_key(self, secret: str) -> ClientKey | None:
        """Return the key ``secret`` belongs to if this process's copy holds it (no database trip)."""
        snapshot = self.snapshot
        return snapshot.keys.get(hash_secret(secret)) if secret and snapshot is not None else None

    async def _reload_or_keep(self, snapshot: Snapshot | None) -> Snapshot:
        """Read the copy again; while the database is away, keep serving the last good one.

        Known keys and upstreams go on working through an outage for up to
        GATEWAY_ROUTING_STALE_MAX seconds (the copy's age; /readyz says degraded); the
        database is tried again once per TTL, not on every request. With no copy, or one
        too old, the DatabaseError goes up: the API answers it with a 503.
        """
        try:
            fresh = await self.reload()
        except DatabaseError as exc:
            if snapshot is None or time.monotonic() - snapshot.loaded_at > settings.GATEWAY_ROUTING_STALE_MAX:
                raise
            if not self.failed_at:
                logger.error("database unavailable (%s): routing from the last good copy, %.0f s old",
                             type(exc).__name__, time.monotonic() - snapshot.loaded_at)
            self.failed_at = time.monotonic()
            return snapshot
        if self.failed_at:
            logger.warning("database available again: routing copy reloaded")
        self.failed_at = 0.0
        return fresh

    @property
    def stale_for(self) -> float | None:
        """Seconds the copy in use has been stale because the database is away (None: it is not)."""
        if not self.failed_at or self.snapshot is None:
            return None
        return time.monotonic() - self.snapshot.loaded_at

    async def reload(self) -> Snapshot:
        """Read the upstreams (and the keys seen so far) again."""
        return await self._shared("upstreams", self._load)

    async def _shared(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        """Return ``read()``'s result; requests asking for ``name`` while it runs share the one read.

        Shielded: a request that is cancelled (its client left) does not cancel the others' read.
        """
        if name not in self._pending:
            future = asyncio.ensure_future(read())
            self._pending[name] = future
            future.add_done_callback(lambda _: self._pending.pop(name, None))
        return await asyncio.shield(self._pending[name])

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
        upstreams, keys, prices = await dbthread.run(_load_routing, seen)
        snapshot = Snapshot(upstreams, loaded_at=started, keys=keys)
        if generation == self.generation:  # no edit landed while reading: keep it
            self.snapshot, self.prices = snapshot, prices
        return snapshot


def _load_context(secret: str) -> tuple[ClientKey | None, list[Upstream], list[Price]]:
    return ClientKey.objects.for_secret(secret) if secret else None, _load_upstreams(), list(Price.objects.all())


def _load_key(secret: str) -> ClientKey | None:
    """The key ``secret`` belongs to, active or revoked (one query: the copy keeps either answer)."""
    return ClientKey.objects.any_for_secret(secret)


def _load_upstreams() -> list[Upstream]:
    return list(Upstream.objects.filter(enabled=True))


def _load_routing(seen: list[str]) -> tuple[list[Upstream], dict[str, ClientKey], list[Price]]:
    """Return the enabled upstreams, those of the ``seen`` hashed secrets still active (with teams), the prices."""
    keys = ClientKey.objects.filter(hashed__in=seen, active=True).select_related("team") if seen else []
    return _load_upstreams(), {key.hashed: key for key in keys}, list(Price.objects.all())


ROUTING = Routing()


def connect_signals() -> None:
    """Drop the copy whenever this process saves or deletes an upstream or a key (AppConfig.ready)."""
    for model in (Upstream, ClientKey, Team, Price):
        post_save.connect(ROUTING.invalidate, sender=model, dispatch_uid=f"routing-{model.__name__}-save")
        post_delete.connect(ROUTING.invalidate, sender=model, dispatch_uid=f"routing-{model.__name__}-delete")
