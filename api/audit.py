"""The audit record of one request: gathered while it runs, settled and written once when it ends.

``Exchange.finish()`` is the one writer of a request's outcome, called from two places:
``api_view`` for answers that are not streamed, and ``RelayResponse.aclose()`` at the end
of a stream. Rows are written in batches by a background task (AuditWriter) so the
client's stream is never held up by the database; the same task then hands each batch to
the live tail (logs/consumers.py). ``drain()`` waits for the ones in flight (shutdown, tests).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest

from api import metrics
from bridge.errors import BridgeError, GatewayError, InvalidRequestError
from bridge.events import UsageReported
from logs.consumers import broadcast
from logs.models import Mode, Outcome, RequestLog
from plumbing import dbthread
from plumbing.intake import Refusal
from upstreams.models import ClientKey, Upstream
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway.audit")
request_logger = logging.getLogger("gateway.requests")
LOG_LINE_FIELDS = ("request_id", "key_name", "client_ip", "endpoint", "model", "upstream_name", "upstream_model",
                   "mode", "stream", "status", "outcome", "error_type", "ttfb_ms", "duration_ms", "input_tokens",
                   "output_tokens", "reasoning_tokens", "cached_tokens", "tool_calls")
# With GATEWAY_LOG_BODIES=true, this much of each body is kept: enough to read a request,
# small enough that a long stream does not bloat the table.
BODY_CAPTURE_BYTES = 64 * 1024
# While the database is away, rows wait in memory: retried after 0.5 s, then twice as long
# each time up to 5 s, and at most this many kept (about 2 KB each without bodies).
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
MAX_KEPT = 100_000


def request_id_for(given: str) -> str:
    """Return the client's ``x-request-id`` when it is sane, else a fresh one."""
    given = given.strip()
    # ASCII only: it is sent on to the upstream, and a header takes nothing else (httpx refuses it).
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return f"req_{uuid.uuid4().hex}"


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def outcome_of(error: BridgeError) -> Outcome:
    """Return whose fault a failed request was, in the audit log's words."""
    if isinstance(error, GatewayError):
        return Outcome.GATEWAY_ERROR
    if isinstance(error, InvalidRequestError):
        return Outcome.REJECTED
    return Outcome.UPSTREAM_ERROR


def _capture_bodies() -> bool:
    return settings.GATEWAY_LOG_BODIES


def _body_text(captured: bytes | bytearray, total: int) -> str:
    text = bytes(captured).decode("utf-8", "replace")
    if total > len(captured):
        text += f"\n… [cut: first {len(captured)} of {total} bytes kept]"
    return text


@dataclass
class Exchange:
    """Everything the audit log keeps about one request, filled in as it goes; ``finish()`` settles it."""

    request_id: str
    endpoint: str
    client_ip: str | None
    request_bytes: int
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.perf_counter)
    key: ClientKey | None = None
    model: str = ""
    upstream: Upstream | None = None
    upstream_model: str = ""
    mode: str = ""
    stream: bool = False
    status: int | None = None
    upstream_status: int | None = None
    outcome: str = ""  # set by finish() only
    error_type: str = ""
    error_message: str = ""
    connected: float | None = None  # the chosen upstream's answer headers arrived
    first_byte: float | None = None
    usage: UsageReported | None = None
    tool_calls: int = 0
    response_bytes: int = 0
    passed_headers: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    handed_off: bool = False  # a background response's task writes the row when it is done (api/background.py)
    capture: bool = field(default_factory=_capture_bodies)  # GATEWAY_LOG_BODIES, read once per request
    request_body: bytes = b""
    response_body: bytearray = field(default_factory=bytearray)

    @classmethod
    def begin(cls, request: HttpRequest, endpoint: str) -> Exchange:
        length = request.META.get("CONTENT_LENGTH") or "0"
        return cls(request_id=request_id_for(request.headers.get("x-request-id", "")), endpoint=endpoint,
                   client_ip=_client_ip(request), request_bytes=int(length) if length.isdigit() else 0)

    def route(self, upstream: Upstream, model: str, *, bridged: bool) -> None:
        self.upstream, self.upstream_model = upstream, model
        self.mode = Mode.BRIDGE if bridged else Mode.PASSTHROUGH

    def mark_connected(self) -> None:
        """Note that the upstream answered (headers in); after a failover, the last upstream counts."""
        self.connected = time.perf_counter()

    def capture_request(self, raw: bytes) -> None:
        """Keep the start of the client's body when body capture is on (redacted when written)."""
        if self.capture:
            self.request_body = raw[:BODY_CAPTURE_BYTES]

    def capture_response(self, chunk: bytes) -> None:
        """Keep the start of what the client was sent when body capture is on; cheap when it is off."""
        if self.capture and len(self.response_body) < BODY_CAPTURE_BYTES:
            self.response_body += chunk[:BODY_CAPTURE_BYTES - len(self.response_body)]

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def finish(self, outcome: str | None = None, error: BridgeError | None = None) -> None:
        """Settle how the request ended and write its one audit row, in the background; later calls do nothing.

        Without ``outcome`` it follows from ``error`` (``outcome_of``), and no error means ok.
        """
        if self.finished:
            return
        self.finished = True
        self.outcome = outcome or (outcome_of(error) if error is not None else Outcome.OK)
        if error is not None:
            self.error_type = error.code or error.type
            self.error_message = error.message[:2000]
        fields = self._fields()
        self._count(fields)
        self._log(fields)
        try:
            WRITER.add(fields)
        except RuntimeError:  # no loop: called outside the server loop
            logger.error("audit row for %s could not be scheduled", self.request_id)

    def _log(self, fields: dict[str, Any]) -> None:
        """Write the request's one structured log line (JSON in the message, and as fields for LOG_FORMAT=json)."""
        line = {name: fields[name] for name in LOG_LINE_FIELDS}
        line["ttfb_ms"] = round(line["ttfb_ms"], 2) if line["ttfb_ms"] is not None else None
        line["duration_ms"] = round(line["duration_ms"], 2)
        request_logger.info(json.dumps(line, ensure_ascii=False), extra={"fields": line})

    def _count(self, fields: dict[str, Any]) -> None:
        upstream = fields["upstream_name"] or "-"
        labels = {"endpoint": self.endpoint, "mode": self.mode or "-"}
        metrics.requests_total.labels(**labels, upstream=upstream, status=str(self.status or 0)).inc()
        metrics.request_duration.labels(**labels).observe(fields["duration_ms"] / 1000)
        if fields["ttfb_ms"] is not None and self.upstream is not None:
            metrics.ttfb.labels(**labels).observe(fields["ttfb_ms"] / 1000)
        if self.outcome == Outcome.UPSTREAM_ERROR:
            metrics.upstream_errors_total.labels(upstream=upstream, kind=self.error_type or "unknown").inc()
        for kind in ("input", "output", "reasoning", "cached"):
            count = fields[f"{kind}_tokens"]
            if count:
                metrics.tokens_total.labels(upstream=upstream, kind=kind).inc(count)

    def _fields(self) -> dict[str, Any]:
        now = time.perf_counter()
        usage = self.usage
        return {
            "request_id": self.request_id, "started": self.started,
            "finished": datetime.now(UTC),
            "client_key": self.key, "key_name": self.key.name if self.key else "",
            "client_ip": self.client_ip, "endpoint": self.endpoint, "model": self.model[:200],
            "upstream": self.upstream, "upstream_name": self.upstream.name if self.upstream else "",
            "upstream_model": self.upstream_model[:200], "mode": self.mode, "stream": self.stream,
            "status": self.status, "upstream_status": self.upstream_status, "outcome": self.outcome,
            "error_type": self.error_type[:64], "error_message": self.error_message,
            "connected_ms": (self.connected - self.t0) * 1000 if self.connected else None,
            "ttfb_ms": (self.first_byte - self.t0) * 1000 if self.first_byte else None,
            "duration_ms": (now - self.t0) * 1000,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "tool_calls": self.tool_calls, "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes, "passed_headers": self.passed_headers,
            "request_body": _body_text(self.request_body, self.request_bytes) if self.request_body else "",
            "response_body": _body_text(self.response_body, self.response_bytes) if self.response_body else "",
        }


def record_refusal(refusal: Refusal) -> str | None:
    """Write the one audit row of an API request that daphne answered itself (plumbing/intake.py).

    Return the request id to answer with; None for paths outside the API (no row).
    """
    if not refusal.path.startswith("/v1/"):
        return None
    exchange = Exchange(request_id=request_id_for(refusal.headers.get("x-request-id", "")),
                        endpoint=refusal.path.removeprefix("/v1/")[:64], client_ip=refusal.client_ip,
                        request_bytes=refusal.request_bytes)
    scheme, _, secret = refusal.headers.get("authorization", "").partition(" ")
    exchange.key = ROUTING.cached_key(secret.strip()) if scheme.lower() == "bearer" else None
    exchange.status = refusal.error.status
    exchange.finish(error=refusal.error)
    return exchange.request_id


class AuditWriter:
    """Write audit rows in batches, from one background task per process.

    Every ORM call under ASGI waits in the one database thread's queue; a row per request
    made that queue the bottleneck under load (bench/). Rows queue here and go out in
    batches of up to BATCH rows, one database trip each, then to the live tail.
    """

    BATCH = 500

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []
        self.writing = 0  # rows in the batch being written
        self.task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self.queue) + self.writing

    def add(self, fields: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()  # RuntimeError when there is none
        self.queue.append(fields)
        self.idle.clear()
        metrics.audit_pending.set(self.pending)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        backoff = RETRY_FIRST
        while self.queue:
            batch, self.queue = self.queue[: self.BATCH], self.queue[self.BATCH :]
            self.writing = len(batch)
            try:
                rows = await dbthread.run(RequestLog.objects.record_many, batch)
            except (OperationalError, InterfaceError) as exc:
                # The database is away: keep the rows, in order, and try again with back-off.
                self.queue = batch + self.queue
                self._bound()
                logger.error("audit rows kept in memory (%d), the database is unavailable: %s; retrying in %.1fs",
                             len(self.queue), type(exc).__name__, backoff)
                self.writing = 0
                metrics.audit_pending.set(self.pending)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            except Exception:
                logger.exception("could not write %d audit row(s)", len(batch))
                rows = []
            finally:
                self.writing = 0
                metrics.audit_pending.set(self.pending)
            backoff = RETRY_FIRST
            # After the write, so a live row's link to its detail page already works.
            await broadcast(rows)
        self.idle.set()

    def _bound(self) -> None:
        """Keep at most MAX_KEPT rows in memory through an outage; the oldest beyond that are dropped, counted."""
        extra = len(self.queue) - MAX_KEPT
        if extra > 0:
            self.queue = self.queue[extra:]
            self.dropped += extra
            logger.error("audit rows dropped after a long database outage: %d (%d in all)", extra, self.dropped)

    async def drain(self) -> None:
        """Wait until every row added so far is written."""
        while self.pending:
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._run())
            await self.idle.wait()


WRITER = AuditWriter()


async def drain() -> None:
    """Wait until every audit row scheduled so far is written."""
    await WRITER.drain()
