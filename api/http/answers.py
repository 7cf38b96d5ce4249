"""What a request ends with: an ``Answer``, whose end settles the request's audit row (the one place it is settled).

An answer is held by whatever sends it: the API app holds a ``JsonAnswer`` until its body is
out and a ``StreamAnswer`` until its stream is over, however that went (a client that left
included); a background response's run holds its request's answer until the run is over
(api/background/run.py), beside the HTTP answer that showed it queued. When the last holder
lets go, ``Answer.release`` settles the row with the answer's ``Ending`` (logs/audit/exchange.py):
the status is the answer's own and the bytes are those sent, never set by hand. A request
refused before it was answered is settled by ``Exchange.refuse`` instead.
"""
from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, StreamingHttpResponse

from api.budgets import admission as budgets
from logs.audit.exchange import Ending, Exchange
from plumbing import metrics

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Answer:
    """The answer of one request: its status and how it ended; settled when its last holder releases it."""

    def __init__(self, exchange: Exchange, status: int | None, ending: Ending | None = None) -> None:
        self.exchange = exchange
        self.ending = ending or Ending()
        self.holders = 0
        exchange.status = status

    def hold(self) -> Answer:
        """Take a share of the answer: the row waits until every holder has released it."""
        self.holders += 1
        return self

    def release(self) -> None:
        """Let go of the answer; the last holder settles the request's row (once)."""
        self.holders -= 1
        if self.holders <= 0:
            self.exchange.finish(self.ending)
            budgets.settle(self.exchange)  # after the row is settled: what it spent is what its row says


class JsonAnswer(HttpResponse):
    """A whole answer (JSON, an error too): its row, if it holds one, is settled once the body is sent."""

    def __init__(self, content: bytes, status: int = 200, answer: Answer | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(content, status=status, content_type="application/json", headers=headers)
        self.answer = answer

    @classmethod
    def of(cls, payload: Any, *, status: int = 200, answer: Answer | None = None) -> JsonAnswer:
        """Return ``payload`` as JSON, encoded as Django's JsonResponse encodes it."""
        return cls(json.dumps(payload, cls=DjangoJSONEncoder).encode(), status=status, answer=answer)

    def sent(self) -> None:
        """The body is out (or the client left while it was sent): count it and release the answer."""
        if self.answer is not None:
            self.answer.exchange.sent(self.content)
            self.answer.exchange.mark_first_byte()
            self.answer.release()


class StreamAnswer(StreamingHttpResponse):
    """A streamed answer: however it ends, ``aclose()`` ends its parts, then releases its answer.

    Its parts are already bytes, sent as they are (without Django's per-part wrapper), and
    counted as the client's (``exchange``, which the answer may or may not hold: a background
    response's live stream shows a run that holds its own). The API app (api/http/app.py)
    always awaits ``aclose()``, even when the client left before the first part was sent.
    """

    def __init__(self, parts: AsyncIterator[bytes], exchange: Exchange, answer: Answer | None, *, status: int = 200,
                 content_type: str = "text/event-stream", headers: dict[str, str] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None, beat: Callable[[], bytes] | None = None,
                 every: float = 0.0) -> None:
        super().__init__(parts, status=status, content_type=content_type, headers={**STREAM_HEADERS, **(headers or {})})
        self.parts, self.exchange, self.answer, self.on_close = parts, exchange, answer, on_close
        # The heartbeat (api/http/app.py sends it): ``beat()`` after ``every`` seconds of silence.
        self.beat, self.every = beat, every
        self.sent_parts = 0  # parts sent so far: a count that stops moving is a silence
        self.busy = False  # a part is being sent: no heartbeat goes in between
        self._sending: AsyncGenerator[bytes, None] | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._sending = self._send()
        return self._sending

    async def _send(self) -> AsyncGenerator[bytes, None]:
        metrics.active_streams.inc()
        try:
            exchange = self.exchange
            async for chunk in self.parts:
                self.busy = True
                # Exchange.sent, inlined: a call per part cost 0.3 us x 100 parts (cProfile).
                exchange.response_bytes += len(chunk)
                exchange.capture_response(chunk)
                yield chunk
                self.busy = False
                self.sent_parts += 1
        finally:
            metrics.active_streams.dec()

    async def aclose(self) -> None:
        """End the stream however far it got (its parts, then ``on_close``), then release its answer."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._sending is not None:
                await self._sending.aclose()
            await _aclose(self.parts)
            if self.on_close is not None:
                await self.on_close()
        finally:
            if self.answer is not None:
                self.answer.release()


async def _aclose(parts: Any) -> None:
    close = getattr(parts, "aclose", None)
    if close is not None:
        await close()
