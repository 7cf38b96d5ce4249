"""A background response's stored row, read for its client: a running one whose process died is marked failed first.

Each process beats (its live rows' ``heartbeat``, api/background/inbox.py) every
GATEWAY_BACKGROUND_HEARTBEAT seconds; a live row whose heartbeat is STALE_BEATS beats old
has lost its process (SIGKILL, a crash) and is marked failed by whoever reads it, so no
response stays ``in_progress`` forever.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils.timezone import now

from bridge.errors import NotFoundError
from plumbing import dbthread
from state.models import StoredResponse
from upstreams.models import ClientKey

STALE_BEATS = 3  # a live row this many heartbeats old has lost its process


def heartbeat() -> float:
    return float(settings.GATEWAY_BACKGROUND_HEARTBEAT)


def stale_before() -> datetime:
    return now() - timedelta(seconds=heartbeat() * STALE_BEATS)


async def read(response_id: str, key: ClientKey | None) -> StoredResponse:
    """Return the key's stored response, a live one whose process died marked failed first; 404 if none."""
    found = await dbthread.run(read_now, response_id, key)
    if found is None:
        raise not_found(response_id)
    return found


def read_now(response_id: str, key: ClientKey | None) -> StoredResponse | None:
    """``read``, sync (on a database thread); None when the key has no such response."""
    found = StoredResponse.objects.for_key(response_id, key)
    if found is not None and found.running:
        if StoredResponse.objects.lose(stale_before(), response_id=response_id):
            found = StoredResponse.objects.for_key(response_id, key)
    return found


def not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
