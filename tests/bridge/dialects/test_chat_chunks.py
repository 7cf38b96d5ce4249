"""bridge.dialects.chat: every upstream quirk of docs/responses-bridge.md §4 becomes the same UpstreamEvents."""
from __future__ import annotations

from typing import Any

import pytest

from bridge.dialects.chat.answer import read_chunk, read_completion
from bridge.events import Finished, ReasoningDelta, TextDelta, ToolCallDelta, UpstreamFailed, UsageReported


def delta(fields: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": fields, "finish_reason": finish_reason}
    return {"object": "chat.completion.chunk", "choices": [choice], **extra}


def tool(index: int | None, call_id: str | None = None, name: str | None = None, arguments: Any = None) -> dict:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    fragment: dict[str, Any] = {"type": "function", "function": function}
    if index is not None:
        fragment["index"] = index
    if call_id is not None:
        fragment["id"] = call_id
    return fragment


CHUNKS = [
    pytest.param(delta({"role": "assistant", "content": "Hello"}), [TextDelta(text="Hello")], id="text"),
    pytest.param(delta({"role": "assistant", "content": ""}), [], id="empty-first-chunk"),
    pytest.param({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None, "logprobs": {"content": [
        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
         "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}, {"token": "Yo", "logprob": -2}]},
        {"token": "!", "logprob": "?"}]}}]},  # Chat allows bytes null (or leaves them out); a bad one is left out
        [TextDelta(text="Hi", logprobs=({"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
            {"token": "Yo", "logprob": -2.0, "bytes": [89, 111]}]},))], id="text-with-logprobs"),
    pytest.param(delta({"content": None}), [], id="null-content"),
    pytest.param(delta({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                 [TextDelta(text="ab")], id="content-as-parts"),
    pytest.param(delta({"reasoning_content": "think"}), [ReasoningDelta(text="think")], id="reasoning-content"),
    pytest.param(delta({"reasoning": "think"}), [ReasoningDelta(text="think")], id="reasoning"),
    pytest.param(delta({"reasoning": "think", "reasoning_content": "think"}), [ReasoningDelta(text="think")],
                 id="both-reasoning-fields-count-once"),
    pytest.param(delta({"reasoning_content": None, "content": "x"}), [TextDelta(text="x")], id="null-reasoning"),
    pytest.param(delta({"refusal": "I can't."}), [TextDelta(text="I can't.")], id="refusal-is-text"),
    pytest.param(delta({}, "stop"), [Finished(reason="stop")], id="finish"),
    pytest.param(delta({"content": "!"}, "length"), [TextDelta(text="!"), Finished(reason="length")],
                 id="text-and-finish"),
    pytest.param(
        delta({"tool_calls": [tool(0, "call_1", "read_file", "")]}),
        [ToolCallDelta(index=0, call_id="call_1", name="read_file", arguments="")],
        id="first-tool-fragment",
    ),
    pytest.param(delta({"tool_calls": [tool(0, arguments='{"pa')]}), [ToolCallDelta(index=0, arguments='{"pa')],
                 id="argument-fragment"),
    pytest.param(
        delta({"tool_calls": [tool(1, "call_2", "f", '{"a')]}),
        [ToolCallDelta(index=1, call_id="call_2", name="f", arguments='{"a')],
        id="id-and-name-repeated-are-passed-on-the-machine-keeps-the-first",
    ),
    pytest.param(
        delta({"tool_calls": [tool(None, "c1", "f", "{}"), tool(None, "c2", "g", '{"x":1}')]}, "tool_calls"),
        [
            ToolCallDelta(index=0, call_id="c1", name="f", arguments="{}"),
            ToolCallDelta(index=1, call_id="c2", name="g", arguments='{"x":1}'),
            Finished(reason="tool_calls"),
        ],
        id="whole-calls-without-index-use-their-position",
    ),
    pytest.param(
        delta({"tool_calls": [tool(0, "c1", "f", {"path": "a.txt", "n": 1})]}),
        [ToolCallDelta(index=0, call_id="c1", name="f", arguments='{"path": "a.txt", "n": 1}')],
        id="arguments-as-object",
    ),
    pytest.param(delta({"tool_calls": [{"index": 0, "type": "function"}]}), [], id="empty-fragment-is-nothing"),
    pytest.param(delta({"tool_calls": [tool(0, "", "", "")]}), [], id="blank-id-and-name-are-nothing"),
    pytest.param(delta({"tool_calls": ["junk", None, tool(2, arguments="x")]}), [ToolCallDelta(index=2, arguments="x")],
                 id="junk-fragments-skipped"),
    pytest.param(
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                                  "prompt_tokens_details": {"cached_tokens": 4},
                                  "completion_tokens_details": {"reasoning_tokens": 2}}},
        [UsageReported(input_tokens=10, output_tokens=5, total_tokens=15, cached_tokens=4, reasoning_tokens=2)],
        id="usage-on-trailing-chunk",
    ),
    pytest.param(
        delta({}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 2}),
        [Finished(reason="stop"), UsageReported(input_tokens=3, output_tokens=2, total_tokens=5)],
        id="usage-on-finish-chunk-total-computed",
    ),
    pytest.param(delta({"content": "x"}, usage=None), [TextDelta(text="x")], id="null-usage"),
    pytest.param(
        {"error": {"message": "context too long", "type": "invalid_request_error", "code": "context_length_exceeded"}},
        [UpstreamFailed(code="context_length_exceeded", message="context too long")],
        id="error-chunk",
    ),
    pytest.param(
        {"error": {"code": 500, "message": "boom", "type": "server_error"}},
        [UpstreamFailed(code="server_error", message="boom")],
        id="llama-cpp-error-with-numeric-code",
    ),
    pytest.param({"error": "overloaded"}, [UpstreamFailed(code="upstream_error", message="overloaded")],
                 id="error-as-string"),
    pytest.param({"choices": [{"index": 0, "message": {"content": "whole"}, "finish_reason": "stop"}]},
                 [TextDelta(text="whole"), Finished(reason="stop")], id="message-instead-of-delta"),
    pytest.param({"id": "x", "choices": []}, [], id="keepalive-chunk"),
    pytest.param({}, [], id="empty-object"),
]


@pytest.mark.parametrize(("chunk", "expected"), CHUNKS)
def test_chat_read_chunk(chunk: dict, expected: list) -> None:
    """Each chunk shape becomes the listed events, in order."""
    assert read_chunk(chunk) == expected


GARBAGE = [
    pytest.param(None, id="null"),
    pytest.param([1, 2], id="list"),
    pytest.param("data", id="string"),
    pytest.param(42, id="number"),
    pytest.param({"choices": "nope"}, id="choices-not-a-list"),
]


@pytest.mark.parametrize("chunk", GARBAGE)
def test_chat_garbage_chunk_is_a_protocol_failure(chunk: Any) -> None:
    """Input that is not a chunk becomes one UpstreamFailed event, never an exception."""
    [event] = read_chunk(chunk)
    assert isinstance(event, UpstreamFailed)
    assert event.code == "upstream_protocol_error"


ODD_BUT_HARMLESS = [
    {"choices": [None]},
    {"choices": [{"delta": "text"}]},
    {"choices": [{"delta": {"tool_calls": "x", "content": 5}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": True, "function": "f"}]}}]},
    {"choices": [], "usage": {"prompt_tokens": "many"}},
    {"choices": [], "usage": {"prompt_tokens": 1.0, "completion_tokens": 2, "prompt_tokens_details": None}},
    {"choices": [{"delta": {}, "finish_reason": 3}]},
]


@pytest.mark.parametrize("chunk", ODD_BUT_HARMLESS)
def test_chat_odd_fields_never_raise(chunk: dict) -> None:
    """Wrongly typed fields are skipped rather than crash the stream."""
    assert isinstance(read_chunk(chunk), list)


def test_chat_completion_becomes_the_streamed_events() -> None:
    """A non-streaming body (upstream ignored stream=true) yields what its stream would have."""
    body = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Looking.",
                    "reasoning_content": "user wants a file",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"p":1}'}},
                        {"id": "call_2", "type": "function", "function": {"name": "ls", "arguments": {"d": "/"}}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    assert read_completion(body) == [
        ReasoningDelta(text="user wants a file"),
        TextDelta(text="Looking."),
        ToolCallDelta(index=0, call_id="call_1", name="read_file", arguments='{"p":1}'),
        ToolCallDelta(index=1, call_id="call_2", name="ls", arguments='{"d": "/"}'),
        Finished(reason="tool_calls"),
        UsageReported(input_tokens=9, output_tokens=4, total_tokens=13),
    ]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param({"content": "hi"}, "stop", id="text"),
        pytest.param({"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "tool_calls",
                     id="calls"),
    ],
)
def test_chat_completion_without_finish_reason_is_still_finished(message: dict, reason: str) -> None:
    """A whole body cannot have been cut off, so a missing finish_reason is not a break."""
    events = read_completion({"choices": [{"index": 0, "message": message}]})
    assert events[-1] == Finished(reason=reason)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="null"),
        pytest.param("text", id="string"),
        pytest.param({"choices": []}, id="no-choices"),
        pytest.param({"choices": [None]}, id="choice-not-an-object"),
        pytest.param({"object": "list"}, id="not-a-completion"),
    ],
)
def test_chat_garbage_completion_is_a_protocol_failure(body: Any) -> None:
    """A body that is not a chat completion becomes one UpstreamFailed event."""
    [event] = read_completion(body)
    assert isinstance(event, UpstreamFailed)
    assert event.code == "upstream_protocol_error"


def test_chat_completion_error_body_keeps_its_code() -> None:
    """An error body answered with status 200 is still the upstream's error."""
    assert read_completion({"error": {"code": "rate_limit_exceeded", "message": "slow down"}}) == [
        UpstreamFailed(code="rate_limit_exceeded", message="slow down")
    ]
