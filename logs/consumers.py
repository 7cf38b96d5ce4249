"""The live tail: every finished request goes to the staff watching ``/ws/logs/``.

``broadcast()`` is called by api/audit.py once a batch of rows is written; the channel layer
(in memory, or Redis with REDIS_URL) carries it to every process, where each
``LogTailConsumer`` sends the rows its page's filters match as one JSON message each.
Rows travel in batches, as the audit writer writes them.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.http import QueryDict
from django.template.loader import render_to_string

from logs.filters import LogFilter
from logs.models import RequestLog, RequestLogDict

logger = logging.getLogger("gateway.live")

GROUP = "request-log"
# A broadcast must never hold up the audit writer, nor shutdown's wait for it.
BROADCAST_TIMEOUT = 2.0
# Channel layers forget a group member after group_expiry (a day by default): a page left
# open for days would go quiet, so each socket rejoins well before that.
REJOIN_EVERY = 3600.0
FORBIDDEN = 4403  # close code for a refused socket (the handshake itself is answered 403)


async def broadcast(logs: list[RequestLog]) -> None:
    """Send finished requests to every live tail, as one channel-layer message; failures are logged, never raised.

    One message per batch of audit rows, not per row: each send is a Redis round trip
    (or a hop through the event loop in memory), and a send per row made the audit
    writer fall behind the requests under load (bench/ soak: its queue grew without end).
    """
    layer = get_channel_layer()
    if layer is None or not logs:
        return
    try:
        await asyncio.wait_for(layer.group_send(GROUP, {"type": "log.rows", "rows": [log.to_dict() for log in logs]}),
                               BROADCAST_TIMEOUT)
    except Exception as exc:
        first = logs[0].request_id
        logger.warning("live tail: %d request(s) from %s on not broadcast (%s: %s)", len(logs), first,
                       type(exc).__name__, exc)


def render_row(row: RequestLogDict) -> str:
    """Return the list page's table row for ``row``: the page and the socket share one template."""
    return render_to_string("logs/_row.html", {"log": RequestLog.from_dict(row)})


class LogTailConsumer(AsyncJsonWebsocketConsumer):
    """One staff member's live tail, filtered like the page that opened it (same query string)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            # Closing before accept makes the server refuse the handshake (HTTP 403).
            await self.close(code=FORBIDDEN)
            return
        self.filters = LogFilter.from_query(QueryDict(self.scope.get("query_string", b"").decode("latin-1")))
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.rejoin = asyncio.ensure_future(self._rejoin())
        await self.accept()

    async def disconnect(self, code: int) -> None:
        rejoin = getattr(self, "rejoin", None)
        if rejoin is not None:
            rejoin.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rejoin
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Ignore what the page sends: the tail only talks one way."""

    async def log_rows(self, event: dict[str, Any]) -> None:
        rows: list[RequestLogDict] = event["rows"]
        for row in rows:
            if self.filters.matches(row):
                await self.send_json({"type": "request", "request": row, "html": render_row(row)})

    async def _rejoin(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY)
            await self.channel_layer.group_add(GROUP, self.channel_name)
