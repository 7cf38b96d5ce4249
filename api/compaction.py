"""Remote compaction answered by the gateway, for every upstream that cannot compact itself.

Codex's remote compaction (a ``compaction_trigger`` as the last input item) and
``POST /v1/responses/compact`` ask for the conversation as one opaque ``compaction`` item.
An upstream that keeps state (OpenAI, Azure) is asked itself; for any other the gateway
summarizes the conversation through it (bridge/history/compaction.py: the history as
text, in chunks that fit the model's window, each folded into a running summary), seals
the summary for the client's key (api/stored/sealed.py) and answers with exactly one
``compaction`` item. A later request that carries the item gets the summary in its place.

The answer is a translated one like any other: the summarizing calls are the source of a
``Translation`` (api/pipeline/relay.py), whose last event is ``Compacted``; a stream is
kept alive by heartbeats while the upstream summarizes. The first call is connected
before the answer starts, so an upstream that refuses (429, 401...) is answered with its
own status, body and back-off headers.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase

from api.http.answers import Answer, JsonAnswer, StreamAnswer
from api.http.endpoint import ApiRequest
from api.pipeline import client, listing
from api.pipeline.plan import Plan, Reply, Route, connect
from api.pipeline.relay import Translation
from api.stored.sealed import seal
from bridge import response as responses
from bridge.errors import UpstreamProtocolError
from bridge.events import Compacted, Finished, TextDelta, UpstreamEvent, UpstreamFailed, UsageReported
from bridge.history import compaction
from bridge.stream import ResponseStream
from bridge.tap import StreamTap
from logs.audit.exchange import Ending

KIND = "compaction"  # the audit row's request_kind


class Summary:
    """The summarizing calls of one compaction: the history in chunks, each folded into the summary so far."""

    def __init__(self, request: ApiRequest, routes: list[Route], body: dict[str, Any], window: int | None) -> None:
        self.request, self.body = request, body
        first = routes[0].upstream
        # An upstream may name a model of its own for summaries: then only it is asked.
        self.model = first.compaction_model or str(body["model"])
        self.routes = routes[:1] if first.compaction_model else routes
        history = compaction.history_of(body)
        blocks = compaction.transcript(history, str(body.get("instructions") or ""))
        self.size = sum(len(block) for block in blocks)
        self.chunks = compaction.chunks(blocks, compaction.chunk_budget(window)) or [""]
        self.user_messages = [m for m in compaction.user_messages(history) if not _is_summary(m)]
        self.calls = 0
        self.usage = UsageReported(input_tokens=0, output_tokens=0, total_tokens=0)
        self.text = ""
        self._first: Reply | None = None

    async def begin(self) -> None:
        """Connect the first call: an upstream that refuses is answered as such, before any byte of ours."""
        self._first = await self._ask(self.chunks[0], "")

    async def run(self) -> str:
        """Fold every chunk into the summary; return it."""
        for number, chunk in enumerate(self.chunks):
            reply = self._first if number == 0 and self._first is not None else await self._ask(chunk, self.text)
            self.text = await self._read(reply)
        self.request.exchange.notes.append(
            f"compaction: {self.size} characters of history summarized in {self.calls} upstream call(s) "
            f"({len(self.chunks)} chunk(s)) into {len(self.text)} characters")
        return self.text

    async def events(self) -> AsyncIterator[list[UpstreamEvent]]:
        """The summary as the answer's events: the sealed item, the calls' usage, the end."""
        summary = await self.run()
        sealed = seal(summary, self.request.client_key, self.model)
        yield [Compacted(encrypted_content=sealed), self.usage, Finished(reason="stop")]

    async def _ask(self, chunk: str, summary_so_far: str) -> Reply:
        exchange = self.request.exchange
        stream = exchange.stream  # connect() takes it from the body it sends: the client's is kept
        body = compaction.summary_request(self.model, chunk, summary_so_far)
        try:
            reply = await connect(self.request, body, self.routes)
        finally:
            exchange.stream = stream
        self.calls += 1
        return reply

    async def _read(self, reply: Reply) -> str:
        """The text of one summarizing call's whole answer, its usage added to the compaction's."""
        upstream = reply.response
        events: list[UpstreamEvent] = []
        try:
            with client.mapped_errors(reply.upstream):
                if reply.dialect.read_body is not None:
                    async for batch in client.read_events(upstream, reply.dialect.reader(), reply.dialect.read_body):
                        events += batch
                else:  # a Responses upstream: its Response object
                    events = _response_events(await upstream.aread(), sse=client.is_event_stream(upstream))
        finally:
            await upstream.aclose()
        for event in events:
            if isinstance(event, UpstreamFailed):
                raise UpstreamProtocolError(f"The upstream failed to summarize the conversation: {event.message}")
            if isinstance(event, UsageReported):
                self.usage = _added(self.usage, event)
        text = "".join(event.text for event in events if isinstance(event, TextDelta)).strip()
        if not text:
            raise UpstreamProtocolError("The upstream gave an empty summary of the conversation.")
        return text


async def respond(request: ApiRequest, plan: Plan) -> HttpResponseBase:
    """Answer a ``compaction_trigger`` with one sealed ``compaction`` item, streamed or whole, as asked."""
    exchange = request.exchange
    exchange.kind = KIND
    body = plan.routed
    summary = await _summary(request, plan, body)
    machine = ResponseStream(model=str(body["model"]), request=body, created_at=time.time(), clock=time.time)
    if exchange.stream:
        answered = Answer(exchange, 200)
        translation = Translation(machine, summary.events(), None, plan.keeper, exchange, answered.ending)
        return StreamAnswer(translation.chunks(), exchange, answered.hold(), beat=translation.beat,
                            every=settings.GATEWAY_STREAM_HEARTBEAT)
    ending = Ending()
    translation = Translation(machine, summary.events(), None, plan.keeper, exchange, ending)
    async for _ in translation.events():
        pass
    if translation.failed:
        assert ending.error is not None
        raise ending.error
    return JsonAnswer.of(translation.response)


async def compact(request: ApiRequest, plan: Plan) -> HttpResponseBase:
    """``POST /v1/responses/compact``: the user messages and one sealed compaction item, as the OpenAI API answers."""
    exchange = request.exchange
    exchange.kind = KIND
    summary = await _summary(request, plan, plan.routed)
    text = await summary.run()
    item = responses.compaction_item(f"cmp_{time.time_ns():x}", seal(text, request.client_key, summary.model))
    exchange.usage = summary.usage
    return JsonAnswer.of(responses.compacted_response(f"resp_{time.time_ns():x}", int(time.time()),
                                                      [*summary.user_messages, item], summary.usage),
                         answer=Answer(exchange, 200).hold())


async def _summary(request: ApiRequest, plan: Plan, body: dict[str, Any]) -> Summary:
    exchange = request.exchange
    exchange.stream = bool(body.get("stream"))
    first = plan.routes[0].upstream
    window = await listing.window_of(first, first.compaction_model or str(body["model"]), exchange.request_id)
    summary = Summary(request, plan.routes, body, window)
    await summary.begin()
    return summary


def _response_events(raw: bytes, *, sse: bool) -> list[UpstreamEvent]:
    """What a Responses upstream's answer says, as the events a Chat one's would: its text and usage."""
    tap = StreamTap("responses", sse=sse)
    tap.feed(raw)
    tap.close()
    found = tap.final_response or {}
    if found.get("status") == "failed":
        error = found.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return [UpstreamFailed(code="upstream_error", message=str(message or "failed"))]
    events: list[UpstreamEvent] = [TextDelta(text=text) for text in responses.output_texts(found)]
    return [*events, tap.usage] if tap.usage is not None else events


def _added(total: UsageReported, more: UsageReported) -> UsageReported:
    return UsageReported(input_tokens=total.input_tokens + more.input_tokens,
                         output_tokens=total.output_tokens + more.output_tokens,
                         total_tokens=total.total_tokens + more.total_tokens)


def _is_summary(message: dict[str, Any]) -> bool:
    content = message.get("content")
    first = content[0] if isinstance(content, list) and content else None
    text = first.get("text") if isinstance(first, dict) else content
    return isinstance(text, str) and text.startswith(compaction.SUMMARY_INTRO)
