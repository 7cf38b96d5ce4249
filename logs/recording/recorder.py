"""The flight recorder: for an upstream's next N exchanges, the raw upstream bytes and what the client was sent.

This is how a user reports "this server breaks Codex", and how it is fixed without their
server. Staff set "record the next exchanges" on an upstream (the admin); each exchange it
answers then keeps, beside its audit row (``logs.models.Recording``): the client's request,
what the upstream was sent, the upstream's answer as read off the socket (each network read
apart) and the bytes the client got, each cut at GATEWAY_RECORDING_MAX_BYTES, secrets
scrubbed. ``manage.py replay REQUEST_ID`` runs the recorded answer through today's
translator, the very code that serves live traffic, and shows what differs;
``manage.py exportfixture REQUEST_ID`` writes it as a test fixture; api/replay.py does both.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F

from bridge.dialects import Dialect, UpstreamOptions, UpstreamRequest
from logs.models import Recording
from logs.recording.fixtures import split_reads
from plumbing import dbthread, metrics
from plumbing.redact import redact_headers, redact_text
from upstreams.models import Upstream

logger = logging.getLogger("gateway.recorder")
_saving: set[asyncio.Task[Any]] = set()


@dataclass
class Part:
    """Bytes kept up to a bound, with the length of each piece they came in."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    reads: list[int] = field(default_factory=list)
    cut: bool = False

    def add(self, piece: bytes) -> None:
        room = self.limit - len(self.data)
        if len(piece) > room:
            self.cut = True
            piece = piece[:max(room, 0)]
        if piece:
            self.data += piece
            self.reads.append(len(piece))


class _Tee(httpx.AsyncByteStream):
    """An upstream answer's byte stream that hands each read to the recorder on its way."""

    def __init__(self, stream: httpx.AsyncByteStream, part: Part) -> None:
        self.stream, self.part = stream, part

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.part.add(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass
class Recorder:
    """One exchange being recorded: filled in by the relay as it goes, saved when the exchange finishes."""

    upstream: Upstream
    dialect: Dialect
    options: UpstreamOptions
    client_request: dict[str, Any]
    routed_request: dict[str, Any]
    sent: UpstreamRequest
    upstream_status: int | None = None
    upstream_headers: dict[str, str] = field(default_factory=dict)
    answer: Part = field(default_factory=lambda: Part(settings.GATEWAY_RECORDING_MAX_BYTES))
    to_client: Part = field(default_factory=lambda: Part(settings.GATEWAY_RECORDING_MAX_BYTES))

    def watch(self, response: httpx.Response) -> None:
        """Record the upstream's answer as it is read (before anything reads it)."""
        self.upstream_status = response.status_code
        self.upstream_headers = redact_headers(response.headers)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Tee(response.stream, self.answer)

    def row(self, request_id: str, started: datetime, endpoint: str, status: int | None) -> dict[str, Any]:
        """The Recording row's fields, secrets scrubbed: the upstream's key verbatim, anything key-like by pattern."""
        known = [self.upstream.api_key] if self.upstream.api_key else []
        limit = settings.GATEWAY_RECORDING_MAX_BYTES
        cut = [name for name, part in (("upstream_body", self.answer), ("client_body", self.to_client)) if part.cut]
        texts = {}
        for name, value in (("client_request", self.client_request), ("routed_request", self.routed_request),
                            ("upstream_request", self.sent.body)):
            text = "" if name == "routed_request" and value == self.client_request else _json_text(value)
            if len(text) > limit:
                text, cut = text[:limit], [*cut, name]
            texts[name] = scrub(text.encode(), known).decode("utf-8", "replace")
        reads = scrub_reads(bytes(self.answer.data), self.answer.reads, known)
        return {"request_id": request_id[:128], "started": started, "upstream_id": self.upstream.pk,
                "upstream_name": self.upstream.name, "endpoint": endpoint[:64], "dialect": self.dialect.name,
                "options": asdict(self.options), **texts, "upstream_status": self.upstream_status,
                "upstream_headers": self.upstream_headers, "upstream_body": b"".join(reads),
                "upstream_reads": [len(r) for r in reads], "client_status": status,
                "client_body": scrub(bytes(self.to_client.data), known), "cut": cut}

    def save(self, request_id: str, started: datetime, endpoint: str, status: int | None) -> None:
        """Write the recording in the background (best effort: a diagnostic, not the audit row)."""
        fields = self.row(request_id, started, endpoint, status)
        try:
            task = asyncio.get_running_loop().create_task(_write(fields))
        except RuntimeError:
            logger.error("recording of %s not saved: no running loop", request_id)
            return
        _saving.add(task)
        metrics.recordings_pending.inc()
        task.add_done_callback(_saved)


def _saved(task: asyncio.Task[Any]) -> None:
    _saving.discard(task)
    metrics.recordings_pending.dec()


async def _write(fields: dict[str, Any]) -> None:
    try:
        await dbthread.run(lambda: Recording.objects.create(**fields))
    except DatabaseError as exc:
        logger.error("recording of %s not saved: %s", fields["request_id"], type(exc).__name__)


async def wait_saved() -> None:
    """Wait for the recordings being written (shutdown, tests)."""
    while _saving:
        await asyncio.gather(*list(_saving), return_exceptions=True)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def scrub(data: bytes, known: list[str]) -> bytes:
    """Return ``data`` with secrets redacted (plumbing/redact.py), other bytes as they were, UTF-8 or not."""
    return redact_text(data.decode("utf-8", "surrogateescape"), known).encode("utf-8", "surrogateescape")


def scrub_reads(data: bytes, reads: list[int], known: list[str]) -> list[bytes]:
    """Return the reads of ``data``, scrubbed; when a secret straddles two reads, they become one."""
    scrubbed = [scrub(piece, known) for piece in split_reads(data, reads)]
    if b"".join(scrubbed) == scrub(data, known):
        return scrubbed
    return [scrub(data, known)]


async def claim(upstream: Upstream) -> bool:
    """Take one of ``upstream``'s "record the next N" (atomically, in the database); False when none is left.

    Costs a query only while the routing copy says some are left: after that this process's
    copy says 0 until it is read again.
    """
    if upstream.record_next <= 0:
        return False
    try:
        taken = await dbthread.run(lambda: Upstream.objects.filter(pk=upstream.pk, record_next__gt=0)
                                   .update(record_next=F("record_next") - 1))
    except DatabaseError as exc:
        logger.warning("flight recorder: counter of %s not read (%s): not recorded", upstream.name,
                       type(exc).__name__)
        return False
    upstream.record_next = max(upstream.record_next - 1, 0) if taken else 0
    return bool(taken)


async def start(upstream: Upstream, dialect: Dialect, options: UpstreamOptions, asked: dict[str, Any],
                routed: dict[str, Any], sent: UpstreamRequest) -> Recorder | None:
    """Return a recorder for this attempt when ``upstream`` is recording, else None."""
    if not await claim(upstream):
        return None
    return Recorder(upstream, dialect, options, asked, routed, sent)
