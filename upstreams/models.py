"""Upstream servers, client keys and the audit log: what staff edit and review.

Reads happen on every request, so the managers hold the lookups (``for_model``,
``for_secret``) with ``a``-prefixed async twins for the async views.
"""
from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils.timezone import now

from upstreams.fields import EncryptedTextField
from upstreams.redact import redact_headers, redact_text

_PATTERN_SPLIT = re.compile(r"[\s,]+")
KEY_PREFIX = "sk-cgw-"
VISIBLE_KEY_CHARS = 12


class MaxTokensField(models.TextChoices):
    MAX_TOKENS = "max_tokens", "max_tokens (llama.cpp, vLLM, Ollama, DeepSeek)"
    MAX_COMPLETION_TOKENS = "max_completion_tokens", "max_completion_tokens (OpenAI)"


class UpstreamQuerySet(models.QuerySet["Upstream"]):
    def for_model(self, model: str) -> list[Upstream]:
        """Return the enabled upstreams serving ``model``, best first.

        Upstreams that name the model (or a glob matching it) come before catch-alls
        (empty ``models``), so adding a catch-all never steals a model from its
        specific upstream; within each group higher ``priority`` wins, then name.
        """
        return rank(self.filter(enabled=True), model)


def rank(upstreams: models.QuerySet[Upstream] | list[Upstream], model: str) -> list[Upstream]:
    """Return the upstreams (of those given) serving ``model``, best first; see ``for_model``."""
    matching = [u for u in upstreams if u.serves(model)]
    return sorted(matching, key=lambda u: (u.is_catch_all, -u.priority, u.name))


class Upstream(models.Model):
    name = models.CharField(max_length=100, unique=True)
    base_url = models.CharField(
        max_length=500,
        help_text="e.g. http://127.0.0.1:8080/v1 or https://api.deepseek.com; no path means /v1.",
    )
    supports_responses = models.BooleanField(
        default=False,
        help_text="Speaks POST /responses itself: pass /v1/responses through instead of bridging it to Chat.",
    )
    # Encrypted at rest (GATEWAY_ENCRYPTION_KEY); plain text in Python.
    api_key = EncryptedTextField(blank=True, help_text="Sent upstream as Authorization: Bearer; stored encrypted.")
    model_map = models.TextField(
        blank=True,
        help_text="Optional renames, one 'alias=upstream-model' per line: clients ask for the alias.",
    )
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher wins among upstreams serving the same model.")
    connect_timeout = models.FloatField(default=10.0, help_text="Seconds to open a connection.")
    read_timeout = models.FloatField(
        default=300.0, help_text="Seconds to wait for the first byte and between two chunks."
    )
    # Chat Completions compatibility, used when bridging /v1/responses.
    accepts_developer_role = models.BooleanField(
        default=False, help_text="Send 'developer' messages as such instead of merging them into the system message."
    )
    replay_reasoning = models.BooleanField(
        default=False, help_text="Replay earlier reasoning as reasoning_content (DeepSeek needs it; Mistral rejects it)."
    )
    max_tokens_field = models.CharField(
        max_length=32, choices=MaxTokensField.choices, default=MaxTokensField.MAX_TOKENS
    )
    send_stream_options = models.BooleanField(
        default=True, help_text="Ask for usage with stream_options.include_usage (turn off for servers that reject it)."
    )
    send_reasoning_effort = models.BooleanField(default=False, help_text="Forward reasoning.effort as reasoning_effort.")
    created = models.DateTimeField(default=now)
    updated = models.DateTimeField(auto_now=True)
    # Last: from here on the name ``models`` means this field, not django.db.models.
    models = models.TextField(
        blank=True,
        help_text="Model names or globs, separated by spaces, commas or lines (deepseek-* qwen*). "
        "Empty: serves any model (catch-all).",
    )

    objects = UpstreamQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def patterns(self) -> list[str]:
        return [p for p in _PATTERN_SPLIT.split(self.models.strip()) if p]

    @property
    def is_catch_all(self) -> bool:
        return not self.patterns

    def serves(self, model: str) -> bool:
        patterns = self.patterns
        if not patterns:
            return True
        aliases = self.aliases
        return any(fnmatch.fnmatchcase(model, p) for p in patterns) or model in aliases

    @property
    def aliases(self) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in self.model_map.splitlines() if "=" in line)
        return {alias.strip(): target.strip() for alias, target in pairs if alias.strip() and target.strip()}

    def upstream_model(self, model: str) -> str:
        """Return the name the upstream knows ``model`` by."""
        return self.aliases.get(model, model)

    @property
    def api_base(self) -> str:
        """Return the base URL ending in the API version path, without a trailing slash.

        Users paste ``http://host:8080``, ``http://host:8080/`` or ``http://host:8080/v1``:
        all mean the same server. A base with another path (``/api/openai``) is kept as is.
        """
        parts = urlsplit(self.base_url.strip())
        path = parts.path.rstrip("/") or "/v1"
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    def url(self, endpoint: str) -> str:
        return f"{self.api_base}/{endpoint.lstrip('/')}"


class ClientKeyManager(models.Manager["ClientKey"]):
    def create_key(self, name: str, **fields: object) -> tuple[ClientKey, str]:
        """Create a key and return it with its secret, which is not stored and never shown again."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = self.create(name=name, prefix=secret[:VISIBLE_KEY_CHARS], hashed=hash_secret(secret), **fields)
        return key, secret

    def for_secret(self, secret: str) -> ClientKey | None:
        return _match(self.filter(prefix=secret[:VISIBLE_KEY_CHARS], active=True), secret)


def hash_secret(secret: str) -> str:
    # Keys are 256 random bits: a fast hash is enough, no key stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def _match(candidates: models.QuerySet[ClientKey] | list[ClientKey], secret: str) -> ClientKey | None:
    hashed = hash_secret(secret)
    for key in candidates:
        if hmac.compare_digest(key.hashed, hashed):
            return key
    return None


class ClientKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=VISIBLE_KEY_CHARS, editable=False)
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True)
    rate_limit = models.CharField(
        max_length=32, blank=True, help_text="e.g. 600/m or 10/s; empty uses GATEWAY_RATE_LIMIT."
    )
    created = models.DateTimeField(default=now)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ClientKeyManager()

    class Meta:
        # The auth lookup: WHERE prefix = ? AND active.
        indexes = [models.Index(fields=["prefix"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Mode(models.TextChoices):
    PASSTHROUGH = "passthrough"
    BRIDGE = "bridge"


class Outcome(models.TextChoices):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"
    REJECTED = "rejected"
    GATEWAY_ERROR = "gateway_error"


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


# The fields of RequestLogDict that are stored as they are (started/finished are converted).
_PLAIN_FIELDS = tuple(name for name in RequestLogDict.__annotations__ if name not in ("started", "finished"))


def _scrubbed(fields: dict[str, Any]) -> dict[str, Any]:
    upstream = fields.get("upstream")
    known = [upstream.api_key] if isinstance(upstream, Upstream) else []
    fields = dict(fields)
    fields["error_message"] = redact_text(str(fields.get("error_message", "")), known)
    for name in ("request_body", "response_body"):
        if fields.get(name):
            fields[name] = redact_text(str(fields[name]), known)
    if isinstance(fields.get("passed_headers"), dict):
        fields["passed_headers"] = redact_headers(fields["passed_headers"])
    return fields


class RequestLogManager(models.Manager["RequestLog"]):
    def record_many(self, rows: list[dict[str, Any]]) -> list[RequestLog]:
        """Write audit rows, scrubbed of secrets, in one statement when possible.

        An upstream may echo its key in an error message or a body: that key is removed
        verbatim, whatever its shape, and anything key-like by pattern. A client may
        resend its own ``x-request-id``; that row is kept under the id plus a suffix
        rather than lost to the unique index.
        """
        logs = [RequestLog(**_scrubbed(fields)) for fields in rows]
        try:
            with transaction.atomic():
                return self.bulk_create(logs)
        except IntegrityError:
            pass
        written = []
        for log in logs:
            for attempt in range(3):
                try:
                    with transaction.atomic():
                        log.save(force_insert=True)
                    written.append(log)
                    break
                except IntegrityError:
                    log.pk = None
                    log.request_id = f"{log.request_id[:100]}~{secrets.token_hex(4)}"
        return written

    async def arecord(self, **fields: Any) -> RequestLog:
        """Write the one audit row of a request (see ``record_many``)."""
        [log] = await sync_to_async(self.record_many)([fields])
        return log

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
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True)
    upstream = models.ForeignKey(Upstream, null=True, blank=True, on_delete=models.SET_NULL)
    upstream_name = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
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
    tool_calls = models.IntegerField(default=0)
    request_bytes = models.IntegerField(default=0)
    response_bytes = models.IntegerField(default=0)
    passed_headers = models.JSONField(default=dict, blank=True)
    # Only with GATEWAY_LOG_BODIES=true: redacted and cut at bridge.audit.BODY_CAPTURE_BYTES.
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)

    objects = RequestLogManager()

    class Meta:
        ordering = ["-started"]
        indexes = [
            # The log list, newest first, optionally by outcome.
            models.Index(fields=["-started"]),
            models.Index(fields=["outcome", "-started"]),
            # The log list filtered by upstream or by key, and the per-key counts in the admin.
            models.Index(fields=["upstream_name", "-started"]),
            models.Index(fields=["client_key", "-started"]),
        ]

    def __str__(self) -> str:
        return self.request_id

    def get_absolute_url(self) -> str:
        return reverse("logs:detail", args=[self.request_id])

    @property
    def failed(self) -> bool:
        return self.outcome != Outcome.OK

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
