"""The one pipeline (api/pipeline/relay.py), in process: what every consumer relies on, on an in-memory upstream.

However its consumer stops reading (to the end, or leaving early), the pipeline tells the
request its usage and tool calls, closes the upstream's answer, ends in a terminal event
and says how it ended; a relayed background answer becomes the background response's own.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from api.pipeline.plan import Reply
from api.pipeline.relay import Relay, Translation, pipeline_for
from bridge.dialects import UpstreamOptions, chat, passthrough
from bridge.dialects.base import UpstreamRequest
from bridge.events import UsageReported
from bridge.stream import ResponseStream
from logs.audit.exchange import Ending
from logs.models import Outcome

CHUNKS = [
    {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1",
                                                        "function": {"name": "f", "arguments": "{}"}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
     "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
]


class Told:
    """The pipeline's Progress: what it told the request."""

    request_id = "req_pipeline"

    def __init__(self) -> None:
        self.usage: UsageReported | None = None
        self.tool_calls = 0
        self.first_byte = False

    def mark_first_byte(self) -> None:
        self.first_byte = True


async def frames(payloads: list[bytes]) -> AsyncIterator[bytes]:
    for payload in payloads:
        yield payload


def upstream(payloads: list[bytes], content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, content=frames(payloads),
                          request=httpx.Request("POST", "http://upstream/"))


def chat_stream() -> list[bytes]:
    return [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in CHUNKS] + [b"data: [DONE]\n\n"]


def translation(told: Told, ending: Ending, response: httpx.Response) -> Translation:
    asked = {"model": "m", "input": "hi", "stream": True}
    sent = chat.DIALECT.to_request(asked, UpstreamOptions())
    pipeline = pipeline_for(Reply(None, chat.DIALECT, sent, response), asked, None, told, ending)
    assert isinstance(pipeline, Translation)
    return pipeline


def events_of(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]


def test_a_translation_read_to_its_end_tells_the_usage_and_the_calls_and_completes() -> None:
    told, ending, response = Told(), Ending(), upstream(chat_stream())

    async def read() -> bytes:
        return b"".join([chunk async for chunk in translation(told, ending, response).chunks()])

    events = events_of(asyncio.run(read()))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert told.usage == UsageReported(input_tokens=7, output_tokens=3, total_tokens=10)
    assert told.tool_calls == 1 and told.first_byte and response.is_closed
    assert (ending.outcome, ending.error) == (Outcome.OK, None)


def test_a_translation_its_client_leaves_tells_what_it_saw_and_closes_the_upstream_at_once() -> None:
    """Closing ``chunks()`` early closes the events under it: the row gets the calls seen so far."""
    told, ending, response = Told(), Ending(), upstream(chat_stream())

    async def leave_early() -> tuple[bool, int]:
        chunks = translation(told, ending, response).chunks()
        async for chunk in chunks:
            if b"response.output_item.added" in chunk and b"function_call" in chunk:
                break
        await chunks.aclose()
        return response.is_closed, told.tool_calls  # at once: the row is settled right after this

    assert asyncio.run(leave_early()) == (True, 1)
    assert ending.outcome == Outcome.CLIENT_DISCONNECTED  # it never ended otherwise


def test_a_relayed_stream_that_breaks_ends_with_response_failed_and_says_so() -> None:
    opened = {"type": "response.created", "sequence_number": 0,
              "response": {"id": "resp_up", "object": "response", "status": "in_progress", "model": "m", "output": []}}
    told, ending = Told(), Ending()
    response = upstream([b"data: " + orjson.dumps(opened) + b"\n\n"])
    relay = Relay(Reply(None, passthrough.RESPONSES, UpstreamRequest(body={}), response), None, told, ending)

    async def read() -> bytes:
        await relay.first()
        return b"".join([chunk async for chunk in relay.chunks()])

    events = events_of(asyncio.run(read()))
    assert [e["type"] for e in events] == ["response.created", "response.failed"]
    assert events[-1]["response"]["id"] == "resp_up" and events[-1]["sequence_number"] == 1
    assert ending.error is not None and ending.error.code == "upstream_protocol_error" and response.is_closed


def test_a_relayed_background_answer_becomes_the_background_responses_own() -> None:
    """Its events go on from the opening's sequence numbers, under the id the client was given."""
    queued = ResponseStream(model="m", response_id="resp_bg")
    opening = queued.queue()
    upstream_events = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_up", "status": "in_progress"}},
        {"type": "response.completed", "sequence_number": 1,
         "response": {"id": "resp_up", "object": "response", "status": "completed", "output": []}},
    ]
    response = upstream([b"data: " + orjson.dumps(e) + b"\n\n" for e in upstream_events])
    told, ending = Told(), Ending()
    relay = Relay(Reply(None, passthrough.RESPONSES, UpstreamRequest(body={}), response), None, told, ending,
                  opening)

    async def read() -> list[dict[str, Any]]:
        return [event async for batch in relay.events() for event in batch]

    events = asyncio.run(read())
    assert [(e["type"], e["sequence_number"], e["response"]["id"]) for e in events] == [
        ("response.completed", len(opening), "resp_bg")]
    assert (ending.outcome, ending.error) == (Outcome.OK, None) and response.is_closed
