"""The live tail's sending side: each batch of written rows goes to the staff watching ``/ws/logs/``.

The writer (logs/audit/writer.py) calls ``broadcast()`` once a batch is written; the channel
layer (in memory, or Redis with REDIS_URL) carries it to every process, where each page's
socket (logs/pages/live.py) sends the rows its filters match.
"""
from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer

from logs.models import RequestLog

logger = logging.getLogger("gateway.live")

GROUP = "request-log"
# A broadcast must never hold up the audit writer, nor shutdown's wait for it.
BROADCAST_TIMEOUT = 2.0


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
