"""Feed our encoded streams through the official openai SDK, offline, as a client would read them.

The SDK's `responses.stream()` accumulator checks response identity, output indexes and unfinished
items (docs/responses-bridge.md §3); strict pydantic validation checks every field's shape.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from bridge.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolMap,
    ToolTarget,
    UpstreamFailed,
    UsageReported,
)
from bridge.sse import encode_event
from bridge.stream import ResponseStream
from tests.bridge.helpers import assert_valid_stream, run

EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = UsageReported(input_tokens=12, output_tokens=7, total_tokens=19, cached_tokens=3, reasoning_tokens=2)
TOOLS: ToolMap = {
    "apply_patch": ToolTarget("custom", "apply_patch"),
    "local_shell": ToolTarget("local_shell", "local_shell"),
    "multi_agent_v1__spawn_agent": ToolTarget("function", "spawn_agent", "multi_agent_v1"),
}
REQUEST = {
    "model": "test-model",
    "input": "hi",
    "tools": [
        {"type": "custom", "name": "apply_patch", "description": "Patch files."},
        {"type": "local_shell"},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
         "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}}]},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
}


def call(index: int, arguments: str = "", *, call_id: str | None = None, name: str | None = None) -> ToolCallDelta:
    return ToolCallDelta(index=index, call_id=call_id, name=name, arguments=arguments)


SCENARIOS = {
    "e1-text": [TextDelta(text="Hello"), TextDelta(text=" world"), TextDelta(text="! 你好世界！"),
                Finished(reason="stop"), USAGE],
    "empty": [Finished(reason="stop")],
    "reasoning-and-text": [ReasoningDelta(text="Let me think"), ReasoningDelta(text="."), TextDelta(text="42"),
                           USAGE, Finished(reason="stop")],
    "e2-interleaved-calls": [
        call(0, '{"files":[{"path":"test.js",', call_id="call_apply_123", name="apply_patch_fn"),
        call(1, '{"command":', call_id="call_shell_456", name="shell"),
        call(0, '"content":"console.log(\'Hello World\')"}]}'),
        call(1, '"ls -la /tmp"}'),
        Finished(reason="tool_calls"),
    ],
    "text-calls-text": [
        TextDelta(text="Checking."),
        call(0, '{"task":"x"}', call_id="call_ns", name="multi_agent_v1__spawn_agent"),
        call(1, '{"input":"*** Begin Patch\\n*** End Patch"}', call_id="call_patch", name="apply_patch"),
        call(2, '{"command":["ls"],"workdir":"/tmp"}', call_id="call_ls", name="local_shell"),
        TextDelta(text="Then more."),
        Finished(reason="stop"),
        USAGE,
    ],
    "late-fragment-while-text-is-open": [
        call(0, '{"a":', call_id="c", name="f"), TextDelta(text="x"), call(0, "1}"), TextDelta(text="y"),
        Finished(reason="tool_calls"),
    ],
    "length": [TextDelta(text="cut"), Finished(reason="length")],
    "content-filter": [Finished(reason="content_filter")],
}
FAILURES = {
    "dropped": [TextDelta(text="Hel"), call(0, '{"a', call_id="c", name="f")],
    "error-chunk": [ReasoningDelta(text="hm"), UpstreamFailed(code="server_error", message="upstream exploded")],
}


def stream_for(name: str) -> tuple[ResponseStream, list[dict]]:
    chat_events = {**SCENARIOS, **FAILURES}[name]
    finish = not any(isinstance(event, UpstreamFailed) for event in chat_events)
    return run(chat_events, finish=finish, tools=TOOLS, request=REQUEST, created_at=1_700_000_000)


def client_for(body: bytes, content_type: str, seen: list[httpx.Request]) -> openai.OpenAI:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    transport = httpx.MockTransport(answer)
    return openai.OpenAI(base_url="http://gateway.test/v1", api_key="x", max_retries=0,
                         http_client=httpx.Client(transport=transport))


def sse_body(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(event) for event in events) + b"data: [DONE]\n\n"


def sdk_stream(events: list[dict]) -> tuple[list[Any], Any]:
    """Return the events the SDK accumulator yields and its final response (None if it raised for no completion)."""
    seen: list[httpx.Request] = []
    client = client_for(sse_body(events), "text/event-stream", seen)
    with client.responses.stream(model="test-model", input="hi") as stream:
        received = list(stream)
        try:
            final = stream.get_final_response()
        except RuntimeError:
            final = None
    assert seen[0].url.path == "/v1/responses"
    return received, final


@pytest.mark.parametrize("name", list(SCENARIOS) + list(FAILURES))
def test_sdk_accumulator_accepts_every_stream(name: str) -> None:
    """The SDK reads each of our streams to the end without raising, event for event."""
    _, events = stream_for(name)
    assert_valid_stream(events)
    received, final = sdk_stream(events)
    assert [event.type for event in received] == [event["type"] for event in events]
    assert (final is not None) == (events[-1]["type"] == "response.completed")


# "error-chunk" fails with server_error: the SDK types `error.code` as a closed enum, which codes
# Codex acts on (context_length_exceeded, upstream_protocol_error) are not in, so "dropped" is left out.
@pytest.mark.parametrize("name", [*SCENARIOS, "error-chunk"])
def test_sdk_models_validate_every_event_strictly(name: str) -> None:
    """Every event, and the final Response, passes the SDK's strict pydantic validation."""
    stream, events = stream_for(name)
    for event in events:
        EVENT.validate_python(json.loads(encode_event(event).split(b"data: ", 1)[1]))
    Response.model_validate(stream.response)


def test_sdk_final_response_has_the_e1_text_and_usage() -> None:
    """E1 through the SDK: output_text is the whole answer and usage is typed."""
    _, events = stream_for("e1-text")
    _, final = sdk_stream(events)
    assert final.output_text == "Hello world! 你好世界！"
    assert final.status == "completed"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (12, 7, 19)
    assert final.usage.input_tokens_details.cached_tokens == 3
    assert final.usage.output_tokens_details.reasoning_tokens == 2


def test_sdk_final_response_has_e2_function_calls() -> None:
    """E2 through the SDK: both calls arrive whole with their call_ids."""
    _, events = stream_for("e2-interleaved-calls")
    _, final = sdk_stream(events)
    calls = [(item.type, item.call_id, json.loads(item.arguments)) for item in final.output]
    assert calls == [
        ("function_call", "call_apply_123", {"files": [{"path": "test.js", "content": "console.log('Hello World')"}]}),
        ("function_call", "call_shell_456", {"command": "ls -la /tmp"}),
    ]


def test_sdk_final_response_restores_every_tool_kind() -> None:
    """Namespaced, custom and local_shell calls come out as the item types Codex dispatches on."""
    _, events = stream_for("text-calls-text")
    _, final = sdk_stream(events)
    by_type = {item.type: item for item in final.output if item.type != "message"}
    assert (by_type["function_call"].name, by_type["function_call"].namespace) == ("spawn_agent", "multi_agent_v1")
    assert by_type["custom_tool_call"].input == "*** Begin Patch\n*** End Patch"
    assert by_type["local_shell_call"].action.command == ["ls"]
    assert by_type["local_shell_call"].action.working_directory == "/tmp"
    assert final.output_text == "Checking.Then more."


def test_sdk_reads_the_failure_code_and_message() -> None:
    """A failed stream reaches the client as response.failed with our error code and message."""
    _, events = stream_for("error-chunk")
    received, final = sdk_stream(events)
    assert final is None
    assert received[-1].type == "response.failed"
    error = received[-1].response.error
    assert (error.code, error.message) == ("server_error", "upstream exploded")
    assert [item.status for item in received[-1].response.output] == ["incomplete"]


def test_sdk_reads_incomplete_details() -> None:
    """A length finish reaches the client as response.incomplete with reason max_output_tokens."""
    _, events = stream_for("length")
    received, _ = sdk_stream(events)
    assert received[-1].type == "response.incomplete"
    assert received[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("name", ["e1-text", "text-calls-text", "length"])
def test_sdk_non_streaming_create_reads_the_response_property(name: str) -> None:
    """For stream:false the gateway answers with `response` as JSON; the SDK parses it."""
    stream, _ = stream_for(name)
    seen: list[httpx.Request] = []
    client = client_for(json.dumps(stream.response).encode(), "application/json", seen)
    response = client.responses.create(model="test-model", input="hi", stream=False)
    assert response.id == stream.response["id"]
    assert response.status == stream.response["status"]
    assert response.output_text == "".join(
        part["text"] for item in stream.response["output"] if item["type"] == "message" for part in item["content"]
    )
    assert [item.type for item in response.output] == [item["type"] for item in stream.response["output"]]


def test_sdk_accumulator_reads_heartbeats_mid_answer() -> None:
    """Heartbeats (response.in_progress between deltas) leave the SDK's accumulated answer as it was."""
    stream = ResponseStream(model="test-model", request=REQUEST, tools=TOOLS, created_at=1_700_000_000)
    events = stream.start() + stream.feed(TextDelta(text="Hel")) + stream.heartbeat()
    events += stream.feed(call(0, '{"a":', call_id="c", name="f")) + stream.heartbeat()
    events += stream.feed(call(0, "1}")) + stream.feed(Finished(reason="tool_calls")) + stream.finish()
    assert_valid_stream(events)
    received, final = sdk_stream(events)
    assert [event.type for event in received].count("response.in_progress") == 3
    assert final.output_text == "Hel"
    assert [(item.type, item.arguments) for item in final.output if item.type == "function_call"] == [
        ("function_call", '{"a":1}')]
