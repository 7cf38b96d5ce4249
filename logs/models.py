"""The request log: one row per API request, written in batches by the audit writer (logs/audit/).

The record's contract: docs/audit.md.

The table keeps its first name, ``upstreams_requestlog``: the model moved here from the
upstreams app with a state-only migration (logs/migrations/0001_initial.py).
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, models, transaction
from django.urls import reverse
from django.utils.timezone import now

from plumbing.redact import redact_headers, redact_text
from upstreams.models import VISIBLE_KEY_CHARS, ClientKey, Team, Upstream

logger = logging.getLogger("gateway.audit")


class Mode(models.TextChoices):
    PASSTHROUGH = "passthrough"
    BRIDGE = "bridge"


class Transport(models.TextChoices):
    HTTP = "http"  # a request, answered as JSON or server-sent events
    WEBSOCKET = "websocket"  # one response.create on a Responses WebSocket (api/socket.py)


class Outcome(models.TextChoices):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"
    REJECTED = "rejected"
    GATEWAY_ERROR = "gateway_error"
    CANCELLED = "cancelled"  # a background response its client cancelled
    INTERRUPTED = "interrupted"  # in flight when its process died (found in that process's journal)


class Fault(models.TextChoices):
    """Whose a failure was (docs/audit.md §2): what the request log's rates and tables are split by.

    The headline error rate counts only the upstreams' failures: a client's bad key or
    unknown model, or a client that left, says nothing about the upstreams' health.
    """

    UPSTREAM = "upstream", "upstream failures"
    REFUSED = "refused", "refused by the gateway"
    DISCONNECTED = "disconnected", "client disconnects"
    GATEWAY = "gateway", "gateway errors"


# Each failed outcome's fault; ok has none.
FAULT_OF_OUTCOME = {
    Outcome.UPSTREAM_ERROR: Fault.UPSTREAM,
    Outcome.REJECTED: Fault.REFUSED,
    Outcome.CLIENT_DISCONNECTED: Fault.DISCONNECTED,
    Outcome.CANCELLED: Fault.DISCONNECTED,
    Outcome.GATEWAY_ERROR: Fault.GATEWAY,
    Outcome.INTERRUPTED: Fault.GATEWAY,
}


def outcomes_of(fault: str) -> list[str]:
    """Return the outcomes that are ``fault``'s (none for a name that is not a fault)."""
    return [str(outcome) for outcome, owner in FAULT_OF_OUTCOME.items() if owner == fault]


def failed_over_names(attempts: list[dict[str, Any]], upstream_name: str) -> str:
    """Return the upstreams a request moved away from, as ``,a,b,`` ("" when it did not fail over).

    A failover is a move from one upstream to another: the failed tries of upstreams other
    than the row's own. A request whose only upstream failed tried that upstream alone,
    and its row already names it (docs/audit.md §2).
    """
    names = [str(a.get("upstream")) for a in attempts
             if isinstance(a, dict) and a.get("upstream") and a.get("upstream") != upstream_name]
    return "".join(f",{name}" for name in names) + "," if names else ""


class RequestLogDict(TypedDict):
    """A finished request as the live tail sends it: JSON-ready (times as ISO 8601 text, no bodies)."""

    request_id: str
    started: str
    finished: str | None
    key_name: str
    client_ip: str | None
    endpoint: str
    model: str
    upstream_name: str
    upstream_model: str
    mode: str
    transport: str
    stream: bool
    status: int | None
    upstream_status: int | None
    outcome: str
    error_type: str
    error_message: str
    connected_ms: float | None
    ttfb_ms: float | None
    duration_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    cached_tokens: int | None
    tool_calls: int
    request_bytes: int
    response_bytes: int
    passed_headers: dict[str, str]
    attempts: list[dict[str, Any]]
    failed_over: str
    request_kind: str
    session_id: str
    presented_key: str


# The fields of RequestLogDict that are stored as they are (started/finished are converted).
_PLAIN_FIELDS = tuple(name for name in RequestLogDict.__annotations__ if name not in ("started", "finished"))


def prepared(fields: dict[str, Any]) -> dict[str, Any]:
    """Return an audit row as it is journaled and written: scrubbed of secrets, fitted, keys and upstreams as ids.

    An upstream may echo its key in an error message or a body: that key is removed
    verbatim, whatever its shape, and anything key-like by pattern. Done before the row
    goes anywhere, the local journal (logs/audit/journal.py) included.
    """
    fields = dict(fields)
    upstream = fields.pop("upstream", None)
    key = fields.pop("client_key", None)
    if "upstream_id" not in fields:
        fields["upstream_id"] = upstream.pk if isinstance(upstream, Upstream) else None
    if "client_key_id" not in fields:
        fields["client_key_id"] = key.pk if isinstance(key, ClientKey) else None
    known = [upstream.api_key] if isinstance(upstream, Upstream) else []
    fields["error_message"] = redact_text(str(fields.get("error_message", "")), known)
    for name in ("request_body", "response_body"):
        if fields.get(name):
            fields[name] = redact_text(str(fields[name]), known)
    if isinstance(fields.get("passed_headers"), dict):
        fields["passed_headers"] = redact_headers(fields["passed_headers"])
    return _fitted(fields)


def _fitted(fields: dict[str, Any]) -> dict[str, Any]:
    """Return the row as every database takes it: no NUL characters, no text longer than its column.

    PostgreSQL refuses a NUL in text and in JSON, and a value over a column's length; a
    client chooses its model name and request id, so either can carry one. The NUL
    becomes U+FFFD (the row still shows something was there).
    """
    fitted = {}
    for name, value in fields.items():
        if isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
            limit = _MAX_LENGTHS.get(name)
            if limit is not None:
                value = value[:limit]
        elif isinstance(value, dict):
            value = {_no_nul(k): _no_nul(v) for k, v in value.items()}
        fitted[name] = value
    return fitted


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class RequestLogManager(models.Manager["RequestLog"]):
    def spending(self, *, key_id: int | None = None, team_id: int | None = None, since: datetime | None = None,
                 until: datetime | None = None, excluding: Collection[str] = ()) -> tuple[int, Decimal]:
        """The tokens (input + output) and US dollars a key's or a team's requests spent in [since, until).

        What budgets are rebuilt from (api/budgets/): the rows are the truth of spending.
        ``excluding``: request ids the caller counts itself (rows on their way to the database).
        """
        rows = self.filter(client_key_id=key_id) if key_id is not None else self.filter(team_id=team_id or 0)
        if excluding:
            rows = rows.exclude(request_id__in=list(excluding))
        if since is not None:
            rows = rows.filter(started__gte=since)
        if until is not None:
            rows = rows.filter(started__lt=until)
        spent = rows.aggregate(input=models.Sum("input_tokens"), output=models.Sum("output_tokens"),
                               cost=models.Sum("cost"))
        return (spent["input"] or 0) + (spent["output"] or 0), spent["cost"] or Decimal(0)

    def record_many(self, rows: list[dict[str, Any]], *, skip_present: bool = False) -> list[RequestLog]:
        """Write audit rows (``prepared()``, or raw fields, prepared here) in one statement when possible.

        ``skip_present``: leave out the rows already there (same request id and start), for
        a batch written again after an error that may have come after its commit, and for
        rows recovered from a dead process's journal: each row is written exactly once.
        A client may resend its own ``x-request-id``; that row is kept under the id plus
        a suffix rather than lost to the unique index.
        """
        logs = [RequestLog(**(fields if "client_key_id" in fields else prepared(fields))) for fields in rows]
        if skip_present and logs:
            present = set(self.filter(request_id__in=[log.request_id for log in logs])
                          .values_list("request_id", "started"))
            logs = [log for log in logs if (log.request_id, log.started) not in present]
        try:
            with transaction.atomic():
                return self.bulk_create(logs)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the writer keeps the rows and tries again
        except (DatabaseError, ValueError):
            pass  # one row the database refuses must not take the others with it
        return [log for log in logs if self._record_one(log)]

    def _record_one(self, log: RequestLog) -> bool:
        """Write one row a batch could not take; return whether it is written (three tries, each mending the row).

        A request id already taken (a client resending its own) gets a suffix; a key or upstream
        deleted since is unlinked; anything else the database refuses is written without its bodies.
        """
        for _attempt in range(3):
            try:
                with transaction.atomic():
                    log.save(force_insert=True)
                return True
            except IntegrityError:
                log.pk = None
                if self.filter(request_id=log.request_id).exists():
                    log.request_id = f"{log.request_id[:100]}~{secrets.token_hex(4)}"
                else:  # not the id: its key or upstream was deleted since
                    log.client_key_id = log.upstream_id = None
            except (OperationalError, InterfaceError):
                raise
            except (DatabaseError, ValueError):
                logger.exception("audit row %s refused by the database; kept without its bodies", log.request_id)
                log.pk, log.request_body, log.response_body = None, "", ""
        return False

    def prune(self, before: datetime, batch: int = 5000) -> int:
        """Delete the rows started before ``before``, ``batch`` at a time; return how many went.

        Small batches keep each transaction short, so a prune of millions of rows never
        holds the table (SQLite: the whole database) locked against the gateway's writes.
        """
        deleted = 0
        while True:
            ids = list(self.filter(started__lt=before).order_by("started").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            deleted += self.filter(pk__in=ids).delete()[0]


class RequestLog(models.Model):
    request_id = models.CharField(max_length=128, unique=True)
    started = models.DateTimeField(default=now)
    finished = models.DateTimeField(null=True, blank=True)
    client_key = models.ForeignKey(ClientKey, null=True, blank=True, on_delete=models.SET_NULL)
    key_name = models.CharField(max_length=100, blank=True)
    # The key's team when the request came: its spending counts against the team's budget.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True)
    upstream = models.ForeignKey(Upstream, null=True, blank=True, on_delete=models.SET_NULL)
    upstream_name = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
    transport = models.CharField(max_length=16, choices=Transport.choices, default=Transport.HTTP)
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Milliseconds after the request was received: the chosen upstream's answer headers,
    # the first byte sent to the client, the end.
    connected_ms = models.FloatField(null=True, blank=True)
    ttfb_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.IntegerField(null=True, blank=True)
    output_tokens = models.IntegerField(null=True, blank=True)
    reasoning_tokens = models.IntegerField(null=True, blank=True)
    cached_tokens = models.IntegerField(null=True, blank=True)
    # What the request cost in US dollars at its model's price when it ended (upstreams.models.Price);
    # ``priced`` is False when no price applied, and the cost is then 0.
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=Decimal(0))
    priced = models.BooleanField(default=False)
    tool_calls = models.IntegerField(default=0)
    request_bytes = models.IntegerField(default=0)
    response_bytes = models.IntegerField(default=0)
    passed_headers = models.JSONField(default=dict, blank=True)
    # The upstreams tried that failed, the row's own upstream included when it failed at connecting:
    # [{"upstream", "at" (host:port), "code", "status", "ms"}], in the order tried.
    attempts = models.JSONField(default=list, blank=True)
    # The other upstreams it moved away from (``failed_over_names``), ",a,b,": "" unless it failed
    # over; for the log's failover and upstream filters and the per-upstream counts on every database.
    failed_over = models.CharField(max_length=200, blank=True)
    # A refused key's first characters (as many as the key list shows of real keys), so that a
    # misconfigured client can be found; "" when the key was known.
    presented_key = models.CharField(max_length=VISIBLE_KEY_CHARS, blank=True)
    # What kind of request it was: Codex's own word (x-codex-turn-metadata's request_kind: turn,
    # compaction, prewarm), or the gateway's (compaction, for a compaction_trigger or /responses/compact).
    request_kind = models.CharField(max_length=32, blank=True)
    # The client's session: Codex's thread id (its session-id / thread-id headers, or the body's
    # client_metadata): /logs/ groups a session's turns by it.
    session_id = models.CharField(max_length=100, blank=True)
    # Why its upstream served it, when it had peers (a pool: api/pipeline/pools.py): the session's
    # member (affinity), the least loaded, or the next after a failure (failover); "" without peers.
    routed_by = models.CharField(max_length=16, blank=True)
    # What the gateway did that the request does not show: a compaction's upstream calls and
    # summary, a compaction item from another server left out. One line each.
    notes = models.TextField(blank=True)
    # Only with GATEWAY_LOG_BODIES=true: redacted and cut at logs.audit.exchange.BODY_CAPTURE_BYTES.
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)

    objects = RequestLogManager()

    class Meta:
        db_table = "upstreams_requestlog"  # its name from before the request log was an app of its own
        ordering = ["-started"]
        indexes = [
            # The log list, newest first, optionally by outcome.
            models.Index(fields=["-started"]),
            models.Index(fields=["outcome", "-started"]),
            # The log list filtered by upstream or by key, and the per-key counts in the admin.
            models.Index(fields=["upstream_name", "-started"]),
            models.Index(fields=["client_key", "-started"]),
            models.Index(fields=["team", "-started"]),  # a team's spending this period
            models.Index(fields=["session_id", "started"]),  # a session's page, its turns in order
        ]

    def __str__(self) -> str:
        return self.request_id

    def get_absolute_url(self) -> str:
        return reverse("logs:detail", args=[self.request_id])

    @property
    def failed(self) -> bool:
        return self.outcome != Outcome.OK

    @property
    def fault(self) -> str:
        """Whose failure it was (a ``Fault`` value), "" when it succeeded."""
        fault = FAULT_OF_OUTCOME.get(Outcome(self.outcome)) if self.outcome in Outcome.values else None
        return str(fault) if fault else ""

    @property
    def failed_over_from(self) -> list[dict[str, Any]]:
        """The tries of other upstreams it moved away from, in order (empty unless it failed over)."""
        return [a for a in self.attempts or [] if isinstance(a, dict) and a.get("upstream") != self.upstream_name]

    @property
    def own_attempt(self) -> dict[str, Any] | None:
        """The failed try of the row's own upstream (it never answered), if there was one."""
        return next((a for a in self.attempts or [] if isinstance(a, dict) and a.get("upstream") == self.upstream_name),
                    None)

    @property
    def tokens_reported(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def total_tokens(self) -> int | None:
        counts = [self.input_tokens, self.output_tokens]
        return None if all(c is None for c in counts) else sum(c or 0 for c in counts)

    def to_dict(self) -> RequestLogDict:
        """Return the row as the live tail sends it: what the list shows, JSON-ready."""
        data = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        data["started"] = self.started.isoformat()
        data["finished"] = self.finished.isoformat() if self.finished else None
        return data  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, data: RequestLogDict) -> RequestLog:
        """Return an unsaved row from ``to_dict()``'s output, for rendering it like a stored one."""
        fields = {name: data.get(name) for name in _PLAIN_FIELDS if name in data}
        finished = data.get("finished")
        return cls(started=datetime.fromisoformat(data["started"]),
                   finished=datetime.fromisoformat(finished) if finished else None, **fields)


class RecordingManager(models.Manager["Recording"]):
    def for_log(self, log: RequestLog) -> Recording | None:
        """Return the recording of a request log row: same start, its id (a resent id's row has a suffix)."""
        request_id = log.request_id.split("~", 1)[0]
        return self.filter(request_id=request_id, started=log.started).first()

    def prune(self, before: datetime) -> int:
        return self.filter(started__lt=before).delete()[0]


class Recording(models.Model):
    """One exchange kept by the flight recorder (logs/recording/recorder.py), secrets scrubbed, each part size-bounded.

    Enough to run the upstream's answer through today's translator again (``manage.py replay``)
    or to turn it into a test fixture (``manage.py exportfixture``) without the upstream.
    Kept beside its request log row (same id and start) rather than in it: it is large and
    rare, and the row's own journaled, batched writing (logs/audit/writer.py) need not carry it.
    """

    request_id = models.CharField(max_length=128, db_index=True)
    started = models.DateTimeField()
    upstream = models.ForeignKey(Upstream, null=True, blank=True, on_delete=models.SET_NULL)
    upstream_name = models.CharField(max_length=100)
    endpoint = models.CharField(max_length=64)
    dialect = models.CharField(max_length=32)  # bridge.dialects: how the upstream was spoken to
    options = models.JSONField(default=dict)  # the UpstreamOptions in force (the compatibility switches)
    client_request = models.TextField()  # the client's JSON body, as it sent it
    routed_request = models.TextField(blank=True)  # with its stored history taken in, when that changed it
    upstream_request = models.TextField()  # the JSON body sent upstream
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    upstream_headers = models.JSONField(default=dict)
    upstream_body = models.BinaryField()  # the upstream's answer, as read off the socket
    upstream_reads = models.JSONField(default=list)  # the length of each network read of it
    client_status = models.PositiveSmallIntegerField(null=True, blank=True)
    client_body = models.BinaryField()  # what the client was sent
    cut = models.JSONField(default=list)  # the parts that were cut at GATEWAY_RECORDING_MAX_BYTES

    objects = RecordingManager()

    class Meta:
        ordering = ["-started"]
        indexes = [models.Index(fields=["started"])]

    def __str__(self) -> str:
        return self.request_id

    @property
    def upstream_size(self) -> int:
        return len(self.upstream_body)

    @property
    def client_size(self) -> int:
        return len(self.client_body)


# Each text column's length, for rows fitted before they are written (``_fitted``).
_MAX_LENGTHS = {field.name: field.max_length for field in RequestLog._meta.concrete_fields
                if isinstance(field, models.CharField) and field.max_length}
