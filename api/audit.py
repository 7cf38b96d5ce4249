"""The audit record of one request: gathered while it runs, settled and written once when it ends.

``Exchange.finish()`` is the one writer of a request's outcome, called from two places:
``api_view`` for answers that are not streamed, and ``RelayResponse.aclose()`` at the end
of a stream. Rows are written in batches by a background task (AuditWriter) so the
client's stream is never held up by the database; the same task then hands each batch to
the live tail (logs/consumers.py). ``drain()`` waits for the ones in flight (shutdown, tests).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest

from api.paths import API_PREFIX, api_path
from api.recorder import Recorder
from bridge.errors import BridgeError, GatewayError, InvalidRequestError
from bridge.events import UsageReported
from logs.consumers import broadcast
from logs.models import Mode, Outcome, RequestLog, Transport, prepared
from plumbing import dbthread, metrics
from plumbing.journal import Journal, Orphan, Position, orphans
from plumbing.patches.intake import Refusal
from upstreams.models import ClientKey, Upstream
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway.audit")
request_logger = logging.getLogger("gateway.requests")
LOG_LINE_FIELDS = ("request_id", "key_name", "client_ip", "endpoint", "model", "upstream_name", "upstream_model",
                   "mode", "transport", "stream", "status", "outcome", "error_type", "ttfb_ms", "duration_ms",
                   "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "tool_calls")
# With GATEWAY_LOG_BODIES=true, this much of each body is kept: enough to read a request,
# small enough that a long stream does not bloat the table.
BODY_CAPTURE_BYTES = 64 * 1024
# While the database is away, rows wait: retried after 0.5 s, then twice as long each time
# up to 5 s. In memory at most GATEWAY_AUDIT_MEMORY_ROWS (about 2 KB each without bodies);
# past that, in the journal only, read back from it once the database returns. Without a
# journal (GATEWAY_JOURNAL_DIR empty), MAX_KEPT_UNJOURNALED, then the oldest are dropped, counted.
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
MAX_KEPT_UNJOURNALED = 100_000
MARK_EVERY = 1.0  # seconds between two "written up to here" marks in the journal
# Set by the Responses WebSocket (api/sockets.py) on the scope of each response.create it answers.
TRANSPORT_KEY = "gateway.transport"
INTERRUPTED_MESSAGE = "The gateway process serving this request ended (killed or crashed) before it finished."


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
    transport: str = Transport.HTTP
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
    attempts: list[dict[str, Any]] = field(default_factory=list)  # upstreams tried that failed (failover)
    finished: bool = False
    handed_off: bool = False  # a background response's task writes the row when it is done (api/background.py)
    capture: bool = field(default_factory=_capture_bodies)  # GATEWAY_LOG_BODIES, read once per request
    request_body: bytes = b""
    response_body: bytearray = field(default_factory=bytearray)
    number: int = 0  # in this process's journal (0: not journaled)
    pinned: list[int] = field(default_factory=list)  # the journal segments of its records, kept until it finishes
    recorder: Recorder | None = None  # the flight recorder, when its upstream is recording (api/recorder.py)

    def __post_init__(self) -> None:
        WRITER.started(self)

    @classmethod
    def begin(cls, request: HttpRequest, endpoint: str) -> Exchange:
        length = request.META.get("CONTENT_LENGTH") or "0"
        scope = getattr(request, "scope", {})
        return cls(request_id=request_id_for(request.headers.get("x-request-id", "")), endpoint=endpoint,
                   client_ip=_client_ip(request), request_bytes=int(length) if length.isdigit() else 0,
                   transport=scope.get(TRANSPORT_KEY, Transport.HTTP))

    def route(self, upstream: Upstream, model: str, *, bridged: bool) -> None:
        self.upstream, self.upstream_model = upstream, model
        self.mode = Mode.BRIDGE if bridged else Mode.PASSTHROUGH
        WRITER.routed(self)

    def start_record(self) -> dict[str, Any]:
        """What the journal keeps of a request when it starts: enough for its row if its process dies."""
        return {"request_id": self.request_id, "started": self.started, "endpoint": self.endpoint,
                "client_ip": self.client_ip, "request_bytes": self.request_bytes, "transport": self.transport}

    def route_record(self) -> dict[str, Any]:
        """What the journal adds once the request is routed: who sent it, what for, to which upstream."""
        return {"client_key_id": self.key.pk if self.key else None, "key_name": self.key.name if self.key else "",
                "model": self.model[:200], "upstream_id": self.upstream.pk if self.upstream else None,
                "upstream_name": self.upstream.name if self.upstream else "",
                "upstream_model": self.upstream_model[:200], "mode": self.mode, "stream": self.stream}

    def failed_attempt(self, upstream: Upstream, at: str, error: BridgeError, since: float) -> None:
        """Note an upstream that was tried and failed (``since``: when it was asked, perf_counter)."""
        self.attempts.append({"upstream": upstream.name, "at": at, "code": error.code or error.type,
                              "status": error.status, "ms": round((time.perf_counter() - since) * 1000, 2)})

    def mark_connected(self) -> None:
        """Note that the upstream answered (headers in); after a failover, the last upstream counts."""
        self.connected = time.perf_counter()

    def capture_request(self, raw: bytes) -> None:
        """Keep the start of the client's body when body capture is on (redacted when written)."""
        if self.capture:
            self.request_body = raw[:BODY_CAPTURE_BYTES]

    def capture_response(self, chunk: bytes) -> None:
        """Keep the start of what the client was sent when body capture is on; cheap when it is off."""
        if self.recorder is not None:
            self.recorder.to_client.add(chunk)
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
            WRITER.add(prepared(fields), self)
        except RuntimeError:  # no loop: called outside the server loop
            logger.error("audit row for %s could not be scheduled", self.request_id)
        if self.recorder is not None:
            self.recorder.save(self.request_id, self.started, self.endpoint, self.status)

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
            "upstream_model": self.upstream_model[:200], "mode": self.mode, "transport": self.transport,
            "stream": self.stream, "status": self.status, "upstream_status": self.upstream_status,
            "outcome": self.outcome,
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
            "attempts": self.attempts,
            "failed_over": "".join(f",{a['upstream']}" for a in self.attempts) + "," if self.attempts else "",
            "request_body": _body_text(self.request_body, self.request_bytes) if self.request_body else "",
            "response_body": _body_text(self.response_body, self.response_bytes) if self.response_body else "",
        }


def record_refusal(refusal: Refusal) -> str | None:
    """Write the one audit row of an API request that daphne answered itself (plumbing/patches/intake.py).

    Return the request id to answer with; None for paths outside the API (no row).
    """
    path = api_path(refusal.path)
    if path is None:
        return None
    exchange = Exchange(request_id=request_id_for(refusal.headers.get("x-request-id", "")),
                        endpoint=path.removeprefix(API_PREFIX)[:64], client_ip=refusal.client_ip,
                        request_bytes=refusal.request_bytes)
    scheme, _, secret = refusal.headers.get("authorization", "").partition(" ")
    exchange.key = ROUTING.cached_key(secret.strip()) if scheme.lower() == "bearer" else None
    exchange.status = refusal.error.status
    exchange.finish(error=refusal.error)
    return exchange.request_id


class AuditWriter:
    """Write audit rows in batches, from one background task per process, through a local journal.

    Every ORM call under ASGI waits in the one database thread's queue; a row per request
    made that queue the bottleneck under load (bench/). Rows queue here and go out in
    batches of up to BATCH rows, one database trip each, then to the live tail.

    With a journal (``open_journal``), each request also leaves three small records in it
    as it goes (started, routed, finished: one ``write()`` each, 2-5 µs), and each
    batch written one more: so a row survives a database outage past the memory bound,
    and a SIGKILL, whether it was in flight or written to no database yet. The next
    process to start on the machine writes a dead process's rows (``recover``): the
    finished ones it had not written, and ``interrupted`` ones for requests it was still
    serving.
    """

    BATCH = 500

    def __init__(self) -> None:
        self.kept: deque[tuple[Position | None, dict[str, Any]]] = deque()  # rows to write, oldest first
        self.behind = False  # rows after ``kept`` are in the journal only: read back from ``cursor``
        self.journal: Journal | None = None
        self.cursor = Position(0, 0)  # the journal's finished records before this are written
        self.unwritten = 0
        self.numbers = itertools.count(1)
        self.task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.dropped = 0
        self.orphans_left = False
        self.marked = 0.0  # when the last "written" mark went into the journal (monotonic)

    @property
    def pending(self) -> int:
        return self.unwritten

    def open_journal(self, root: Path) -> None:
        """Journal this process's rows under ``root``, then write the rows dead processes left there (at start)."""
        self.journal = Journal(root)
        self.cursor = self.journal.end
        self.recover()

    def close_journal(self) -> None:
        """Remove this process's journal once every row is written (a clean exit: nothing to recover)."""
        if self.journal is not None and not self.pending:
            self.journal.close()
            self.journal = None

    def started(self, exchange: Exchange) -> None:
        if self.journal is None:
            return
        exchange.number = next(self.numbers)
        self._pin(exchange, self._append({"k": "s", "n": exchange.number, "f": exchange.start_record()}))

    def routed(self, exchange: Exchange) -> None:
        if exchange.number and not exchange.finished:
            self._pin(exchange, self._append({"k": "r", "n": exchange.number, "f": exchange.route_record()}))

    def _pin(self, exchange: Exchange, position: Position | None) -> None:
        if position is not None and self.journal is not None:
            exchange.pinned.append(position.segment)
            self.journal.pin(position.segment)

    def _append(self, record: dict[str, Any]) -> Position | None:
        assert self.journal is not None
        try:
            return self.journal.append(record)
        except OSError as exc:
            logger.error("audit journal not written (%s): this row is kept in memory only", exc)
            return None

    def add(self, fields: dict[str, Any], exchange: Exchange | None = None) -> None:
        """Queue a ``prepared()`` row (journaled first, when there is a journal) for the next batch."""
        loop = asyncio.get_running_loop()  # RuntimeError when there is none
        position = None
        if self.journal is not None:
            position = self._append({"k": "f", "n": exchange.number if exchange else 0, "f": fields})
            if exchange is not None:
                for segment in exchange.pinned:
                    self.journal.unpin(segment)
                exchange.pinned.clear()
        self.unwritten += 1
        if position is not None and (self.behind or len(self.kept) >= settings.GATEWAY_AUDIT_MEMORY_ROWS):
            self.behind = True  # in the journal only, for now
        else:
            self.kept.append((position, fields))
            self._bound()
        self.idle.clear()
        metrics.audit_pending.set(self.pending)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())

    def _next_batch(self) -> tuple[list[dict[str, Any]], Position | None, bool]:
        """Return the next rows to write, the journal position after them, and whether they were read back."""
        if self.kept:
            items = [self.kept.popleft() for _ in range(min(self.BATCH, len(self.kept)))]
            positions = [position for position, _ in items if position is not None]
            return [fields for _, fields in items], (positions[-1] if positions else None), False
        assert self.journal is not None
        while True:
            found, after = self.journal.read(self.cursor, 4 * self.BATCH)
            if not found:
                self.behind = False  # caught up: from here rows are kept in memory again
                return [], None, False
            rows = [_revived(record["f"]) for _, record in found if record.get("k") == "f"]
            if rows:
                return rows, after, True
            self.cursor = after

    async def _run(self) -> None:
        backoff, retrying = RETRY_FIRST, False
        while self.kept or self.behind:
            batch, after, read_back = self._next_batch()
            if not batch:
                continue
            try:
                rows = await dbthread.run(_record, batch, retrying or read_back)
            except (OperationalError, InterfaceError) as exc:
                # The database is away: keep the rows, in order, and try again with back-off.
                if not read_back:
                    self.kept.extendleft(reversed([(None, fields) for fields in batch[:-1]] + [(after, batch[-1])]))
                logger.error("audit rows waiting (%d), the database is unavailable: %s; retrying in %.1fs",
                             self.pending, type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff, retrying = min(backoff * 2, RETRY_MAX), True
                continue
            except Exception:
                logger.exception("could not write %d audit row(s)", len(batch))
                rows = []
            backoff, retrying = RETRY_FIRST, False
            self.unwritten -= len(batch)
            metrics.audit_pending.set(self.pending)
            if after is not None and self.journal is not None:
                self._written(after)
            if self.orphans_left:
                await dbthread.run(self.recover)
            # After the write, so a live row's link to its detail page already works.
            await broadcast(rows)
        self.idle.set()

    def _written(self, after: Position) -> None:
        """Note that the journal's rows before ``after`` are written.

        The mark goes into the journal at most once a second (a recovery skips the rows it
        finds already written, so a missing mark costs a query, not a duplicate), and
        segments are released only once the writer has moved past one: at low traffic a
        batch is one row, and each extra ``write()`` was a tenth of the journal's cost.
        """
        assert self.journal is not None
        moved_on = after.segment != self.cursor.segment
        self.cursor = after
        now = time.monotonic()
        if now - self.marked >= MARK_EVERY or moved_on:
            self.marked = now
            self._append({"k": "w", "to": list(after)})
        if moved_on:
            self.journal.release(after)

    def _bound(self) -> None:
        """Without a journal, keep at most MAX_KEPT_UNJOURNALED rows through an outage; drop the oldest, counted."""
        extra = len(self.kept) - MAX_KEPT_UNJOURNALED
        if extra > 0:
            for _ in range(extra):
                self.kept.popleft()
            self.unwritten -= extra
            self.dropped += extra
            logger.error("audit rows dropped after a long database outage: %d (%d in all)", extra, self.dropped)

    def recover(self) -> int:
        """Write the rows of dead processes' journals (sync: at start, or on the database thread); return how many."""
        if self.journal is None:
            return 0
        self.orphans_left = False
        recovered = 0
        for orphan in orphans(self.journal.root, mine=self.journal.directory):
            try:
                rows = _orphan_rows(orphan)
                written = []
                for start in range(0, len(rows), self.BATCH):
                    written += RequestLog.objects.record_many(rows[start:start + self.BATCH], skip_present=True)
            except DatabaseError as exc:
                logger.error("audit rows of a dead process's journal (%s) not written yet: %s", orphan.directory, exc)
                orphan.keep()
                self.orphans_left = True
                continue
            interrupted = sum(1 for row in written if row.outcome == Outcome.INTERRUPTED)
            if written:
                logger.warning("audit rows recovered from a dead process's journal (%s): %d finished, %d interrupted",
                               orphan.directory.name, len(written) - interrupted, interrupted)
            recovered += len(written)
            orphan.discard()
        return recovered

    async def drain(self) -> None:
        """Wait until every row added so far is written."""
        while self.pending:
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._run())
            await self.idle.wait()


def _record(rows: list[dict[str, Any]], skip_present: bool) -> list[RequestLog]:
    return RequestLog.objects.record_many(rows, skip_present=skip_present)


def _revived(fields: dict[str, Any]) -> dict[str, Any]:
    """Return a row read back from the journal with its times as datetimes again."""
    for name in ("started", "finished"):
        if isinstance(fields.get(name), str):
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


def _orphan_rows(orphan: Orphan) -> list[dict[str, Any]]:
    """The rows a dead process had not written: finished after its last written batch, and interrupted ones."""
    starts: dict[int, dict[str, Any]] = {}
    finished: list[tuple[Position, dict[str, Any]]] = []
    written_to = Position(0, 0)  # every finished record up to here was written
    for position, record in orphan.records():
        kind = record.get("k")
        if kind == "s":
            starts[record["n"]] = dict(record["f"])
        elif kind == "r" and record["n"] in starts:
            starts[record["n"]].update(record["f"])
        elif kind == "f":
            starts.pop(record.get("n", 0), None)
            finished.append((position, record["f"]))
        elif kind == "w":
            written_to = max(written_to, Position(*record["to"]))
    died = datetime.fromtimestamp(orphan.last_written(), UTC)
    rows = [_revived(fields) for position, fields in finished if position > written_to]
    for fields in starts.values():
        row = _revived(fields)
        row.update(finished=max(died, row["started"]), outcome=Outcome.INTERRUPTED, error_type="interrupted",
                   error_message=INTERRUPTED_MESSAGE)
        row["duration_ms"] = (row["finished"] - row["started"]).total_seconds() * 1000
        row.setdefault("client_key_id", None)
        rows.append(row)
    return rows


WRITER = AuditWriter()


async def drain() -> None:
    """Wait until every audit row scheduled so far is written; then this process's journal is not needed."""
    await WRITER.drain()
    WRITER.close_journal()
