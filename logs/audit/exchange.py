"""The audit record of one request: gathered while it runs, settled once when it ends (docs/audit.md).

``Exchange.finish()`` settles the row of an answered request (its answer calls it when it
ends, api/http/answers.py); ``Exchange.refuse()`` that of a request refused before it was
routed. Either hands the row to the writer (logs/audit/writer.py), which writes rows in
batches so that no answer waits for the database.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from bridge.errors import BridgeError, GatewayError, InvalidRequestError
from bridge.events import UsageReported
from logs.audit import client, writer
from logs.models import Mode, Outcome, Transport, failed_over_names, prepared
from logs.recording.recorder import Recorder
from plumbing import metrics
from upstreams.models import VISIBLE_KEY_CHARS, ClientKey, Upstream
from upstreams.routing import ROUTING

logger = logging.getLogger("gateway.audit")
request_logger = logging.getLogger("gateway.requests")
LOG_LINE_FIELDS = ("request_id", "key_name", "client_ip", "endpoint", "model", "upstream_name", "upstream_model",
                   "mode", "transport", "stream", "status", "outcome", "error_type", "ttfb_ms", "duration_ms",
                   "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "tool_calls")
# With GATEWAY_LOG_BODIES=true, this much of each body is kept: enough to read a request,
# small enough that a long stream does not bloat the table.
BODY_CAPTURE_BYTES = 64 * 1024
# Set by the Responses WebSocket (api/socket.py) on the scope of each response.create it answers.
TRANSPORT_KEY = "gateway.transport"


def request_id_for(given: str) -> str:
    """Return the client's ``x-request-id`` when it is sane, else a fresh one."""
    given = given.strip()
    # ASCII only: it is sent on to the upstream, and a header takes nothing else (httpx refuses it).
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return f"req_{uuid.uuid4().hex}"


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _presented_key(authorization: str) -> str:
    """Return the first characters of a Bearer key: no more than the key list shows of real keys, nor half of it.

    Half at most: a short key (a password typed in) is never shown whole.
    """
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    shown = secret[:min(VISIBLE_KEY_CHARS, len(secret) // 2)]
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in shown)


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


@dataclass(slots=True)
class Ending:
    """How a request ended, as its answer saw it: what settles its row's outcome (``Exchange.finish``)."""

    outcome: str | None = Outcome.CLIENT_DISCONNECTED  # until the answer is over; None: follows ``error``
    error: BridgeError | None = None

    def complete(self) -> None:
        self.outcome, self.error = Outcome.OK, None

    def fail(self, error: BridgeError) -> None:
        self.outcome, self.error = None, error

    def cancel(self) -> None:
        """A background response its client cancelled."""
        self.outcome, self.error = Outcome.CANCELLED, None


@dataclass
class Exchange:
    """Everything the audit log keeps about one request, filled in as it goes; settled once, when it ends.

    An answered request is settled by ``finish`` (its answer calls it when it ends:
    api/http/answers.py), one refused before it was answered by ``refuse``.
    """

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
    cost: Decimal = Decimal(0)  # at the model's price (set when it is settled); priced: whether one applied
    priced: bool = False
    hold: Any = None  # what its budgets hold for it until it ends (api/budgets/), released with its answer
    tool_calls: int = 0
    response_bytes: int = 0
    passed_headers: dict[str, str] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # upstreams tried that failed (failover)
    routed_by: str = ""  # why its upstream served it: affinity, least_loaded, failover (api/pipeline/pools.py)
    kind: str = ""  # the request's kind: Codex's request_kind, or compaction (logs/audit/client.py)
    session: str = ""  # the client's session (Codex's thread id)
    presented: str = ""  # the start of the key the client sent: on the row when no known key matched it
    notes: list[str] = field(default_factory=list)  # what the gateway did that the request does not show
    finished: bool = False
    capture: bool = field(default_factory=_capture_bodies)  # GATEWAY_LOG_BODIES, read once per request
    request_body: bytes = b""
    response_body: bytearray = field(default_factory=bytearray)
    number: int = 0  # in this process's journal (0: not journaled)
    pinned: list[int] = field(default_factory=list)  # the journal segments of its records, kept until it finishes
    recorder: Recorder | None = None  # the flight recorder, when its upstream is recording (logs/recording/recorder.py)

    def __post_init__(self) -> None:
        writer.WRITER.started(self)

    @classmethod
    def begin(cls, request: HttpRequest, endpoint: str) -> Exchange:
        length = request.META.get("CONTENT_LENGTH") or "0"
        scope = getattr(request, "scope", {})
        session, kind = client.said_in_headers(request.headers)
        return cls(request_id=request_id_for(request.headers.get("x-request-id", "")), endpoint=endpoint,
                   client_ip=_client_ip(request), request_bytes=int(length) if length.isdigit() else 0,
                   transport=scope.get(TRANSPORT_KEY, Transport.HTTP), session=session, kind=kind,
                   presented=_presented_key(request.headers.get("authorization", "")))

    def route(self, upstream: Upstream, model: str, *, bridged: bool) -> None:
        """Note the upstream being tried; what an earlier one answered is not this one's (failover).

        The upstream counts one more request in flight (``ROUTING.busy``) until the request
        moves on or is settled: what least-loaded routing reads (api/pipeline/pools.py).
        """
        if self.upstream is not None:  # another was tried first
            ROUTING.idle(self.upstream.pk)
            self.routed_by = "failover"
        ROUTING.take(upstream.pk)
        self.upstream, self.upstream_model = upstream, model
        self.upstream_status = self.connected = None
        self.mode = Mode.BRIDGE if bridged else Mode.PASSTHROUGH
        writer.WRITER.routed(self)

    def start_record(self) -> dict[str, Any]:
        """What the journal keeps of a request when it starts: enough for its row if its process dies."""
        return {"request_id": self.request_id, "started": self.started, "endpoint": self.endpoint,
                "client_ip": self.client_ip, "request_bytes": self.request_bytes, "transport": self.transport}

    def route_record(self) -> dict[str, Any]:
        """What the journal adds once the request is routed: who sent it, what for, to which upstream."""
        return {"client_key_id": self.key.pk if self.key else None, "key_name": self.key.name if self.key else "",
                "model": self.model[:200], "upstream_id": self.upstream.pk if self.upstream else None,
                "upstream_name": self.upstream.name if self.upstream else "",
                "upstream_model": self.upstream_model[:200], "mode": self.mode, "stream": self.stream,
                "request_kind": self.kind, "session_id": self.session}

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

    def sent(self, chunk: bytes) -> None:
        """Count what the client was sent, and keep its start when body capture (or the recorder) is on."""
        self.response_bytes += len(chunk)
        self.capture_response(chunk)

    def capture_response(self, chunk: bytes) -> None:
        """Keep the start of what the client was sent when body capture is on; cheap when it is off."""
        if self.recorder is not None:
            self.recorder.to_client.add(chunk)
        if self.capture and len(self.response_body) < BODY_CAPTURE_BYTES:
            self.response_body += chunk[:BODY_CAPTURE_BYTES - len(self.response_body)]

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def finish(self, ending: Ending) -> None:
        """Settle an answered request as its answer ended, and write its one row (in the background), once."""
        self._settle(ending.outcome, ending.error)

    def refuse(self, error: BridgeError, *, answered: bytes = b"", outcome: str | None = None) -> None:
        """Settle a request refused before it was answered (``answered``: the error body it was sent, if any).

        The one entry point for refusals: daphne's own (plumbing/patches/intake.py), a
        Responses socket's upgrade or message, and the API's checks before a view runs
        (key, rate limit, method, body). The status is the error's.
        """
        self.status = error.status
        if answered:
            self.sent(answered)
            self.mark_first_byte()
        self._settle(outcome, error)

    def _settle(self, outcome: str | None, error: BridgeError | None) -> None:
        """Write the row; without ``outcome`` it follows from ``error`` (``outcome_of``), and no error means ok."""
        if self.finished:
            return
        self.finished = True
        if self.upstream is not None:
            ROUTING.idle(self.upstream.pk)
        self.outcome = outcome or (outcome_of(error) if error is not None else Outcome.OK)
        if error is not None:
            self.error_type = error.code or error.type
            self.error_message = error.message[:2000]
        self._price()
        fields = self._fields()
        self._count(fields)
        self._log(fields)
        try:
            writer.WRITER.add(prepared(fields), self)
        except RuntimeError:  # no loop: called outside the server loop
            logger.error("audit row for %s could not be scheduled", self.request_id)
        if self.recorder is not None:
            self.recorder.save(self.request_id, self.started, self.endpoint, self.status)

    def _price(self) -> None:
        """Cost the request at its model's price (the name asked, else the one sent); 0 and unpriced without one."""
        price = ROUTING.price(self.model) or (ROUTING.price(self.upstream_model) if self.upstream_model else None)
        self.priced = price is not None
        usage = self.usage
        if price is not None and usage is not None:
            self.cost = price.cost(usage.input_tokens, usage.cached_tokens or 0, usage.output_tokens)

    @property
    def spent_tokens(self) -> int:
        """The tokens its budgets count: input and output, as the upstream reported them."""
        usage = self.usage
        return usage.input_tokens + usage.output_tokens if usage is not None else 0

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
        if self.key is not None and self.usage is not None:
            spender = {"key": self.key.name, "team": self.key.team_name or "-",
                       "model": self.model[:200] or "-"}
            metrics.spend_tokens_total.labels(**spender).inc(self.spent_tokens)
            if self.cost:
                metrics.spend_usd_total.labels(**spender).inc(float(self.cost))

    def _fields(self) -> dict[str, Any]:
        now = time.perf_counter()
        usage = self.usage
        return {
            "request_id": self.request_id, "started": self.started,
            "finished": datetime.now(UTC),
            "client_key": self.key, "key_name": self.key.name if self.key else "",
            "team_id": self.key.team_id if self.key else None,
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
            "cost": str(self.cost), "priced": self.priced,
            "tool_calls": self.tool_calls, "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes, "passed_headers": self.passed_headers,
            "attempts": self.attempts,
            "failed_over": failed_over_names(self.attempts, self.upstream.name if self.upstream else ""),
            "presented_key": self.presented if self.key is None else "",
            "request_kind": self.kind, "session_id": self.session, "routed_by": self.routed_by,
            "notes": "\n".join(self.notes),
            "request_body": _body_text(self.request_body, self.request_bytes) if self.request_body else "",
            "response_body": _body_text(self.response_body, self.response_bytes) if self.response_body else "",
        }
