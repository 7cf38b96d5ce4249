"""Reading Chat answers at the IO edge: the same events however the bytes arrive."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.pipeline.client import read_events
from bridge.dialects.chat import answer as chat
from bridge.events import Finished, TextDelta, ToolCallDelta, UpstreamFailed

BODY = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
    b": keep-alive\n\n"
    b'data:{"choices": [{"index": 0, "delta": {"content": "lo \xe4\xbd\xa0"}}]}\n\n'
    b'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", '
    b'"function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}\n\n'
    b"data: [DONE]\n\n"
)
EVENTS = [TextDelta(text="Hel"), TextDelta(text="lo 你"),
          ToolCallDelta(index=0, call_id="c1", name="f", arguments="{}"), Finished(reason="tool_calls")]


async def pieces(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def read(chunks: list[bytes], content_type: str = "text/event-stream") -> list:
    async def collect() -> list:
        response = httpx.Response(200, headers={"content-type": content_type}, content=pieces(chunks))
        batches = read_events(response, chat.read_chunk, chat.read_completion)
        return [event async for batch in batches for event in batch]

    return asyncio.run(collect())


@pytest.mark.parametrize("chunks", [
    pytest.param([BODY], id="whole"),
    pytest.param([BODY[i:i + 1] for i in range(len(BODY))], id="one-byte-at-a-time"),
    pytest.param([BODY.replace(b"\n", b"\r\n")], id="crlf"),
    pytest.param([BODY.replace(b"\n", b"\r\n")[i:i + 7] for i in range(0, 2 * len(BODY), 7)], id="crlf-split"),
])
def test_chat_events_are_the_same_however_the_stream_is_split(chunks: list[bytes]) -> None:
    assert read([c for c in chunks if c]) == EVENTS


def test_a_mislabelled_stream_is_read_by_its_frames() -> None:
    assert read([BODY], content_type="text/plain") == EVENTS


def test_a_json_answer_to_a_stream_request_becomes_the_same_events() -> None:
    body = (b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, '
            b'"finish_reason": "stop"}]}')
    assert read([body], content_type="application/json") == [TextDelta(text="Hi"), Finished(reason="stop")]


def test_an_unparsable_frame_becomes_a_protocol_failure() -> None:
    [event] = read([b"data: {oops\n\n"])
    assert isinstance(event, UpstreamFailed) and event.code == "upstream_protocol_error"
