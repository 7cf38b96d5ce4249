"""The live tail's page side: ``/ws/logs/``, each finished request that the page's filters match, as it ends.

Rows arrive in batches, as the audit writer writes them (logs/audit/tail.py sends them
through the channel layer); each ``LogTailConsumer`` sends the rows its page's filters
match as one JSON message each.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import QueryDict
from django.template.loader import render_to_string

from logs.audit.tail import GROUP
from logs.models import RequestLog, RequestLogDict
from logs.pages.filters import LogFilter

# Channel layers forget a group member after group_expiry (a day by default): a page left
# open for days would go quiet, so each socket rejoins well before that.
REJOIN_EVERY = 3600.0
FORBIDDEN = 4403  # close code for a refused socket (the handshake itself is answered 403)


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
        # Whatever the filters: the page's summary counts every row, and reloads on this.
        await self.send_json({"type": "written", "count": len(rows)})

    async def _rejoin(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY)
            await self.channel_layer.group_add(GROUP, self.channel_name)
