"""The Anthropic Messages dialect, pure: a Responses request as Messages, and Messages events read back.

Against docs/anthropic.md: the shape Messages requires (roles alternating, tool results first
in the next user message, thinking before its tool_use, max_tokens), the breakpoints, and the
answer's events through ResponseStream into a stream the Open Responses models accept.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.dialects import dialect_for, protocol_headers
from bridge.dialects.anthropic import answer, request, thinking
from bridge.dialects.anthropic.answer import MessagesReader, ratelimit_headers, read_message
from bridge.dialects.base import UpstreamOptions
from bridge.errors import InvalidRequestError
from bridge.events import Finished, ReasoningDelta, ReasoningSealed, TextDelta, ToolCallDelta, UsageReported
from tests.bridge.helpers import assert_valid_stream, run

SIGNED = {"type": "thinking", "thinking": "Plan: run ls.", "signature": "sig-1"}
USER = {"role": "user", "content": "hi"}
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
         {"type": "custom", "name": "apply_patch"}]


def to_messages(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    return request.to_request({"model": "claude-sonnet-4-5", **body}, UpstreamOptions(**options)).body


def test_the_table_sends_responses_to_messages_with_the_key_as_x_api_key() -> None:
    assert dialect_for("responses", "anthropic").endpoint == "messages"
    assert protocol_headers("anthropic", "sk-ant") == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant"}
    assert protocol_headers("chat", "sk") == {"authorization": "Bearer sk"}


def test_a_tool_turn_becomes_alternating_messages_with_thinking_first_and_results_next() -> None:
    items = [
        {"role": "developer", "content": "Use tools."}, USER,
        {"type": "reasoning", "summary": [], "encrypted_content": thinking.seal(SIGNED)},
        {"type": "function_call", "call_id": "call.1:x", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and quickly"}]},
        {"type": "function_call_output", "call_id": "call.1:x", "output": "a.txt"},
    ]
    body = to_messages({"input": items, "tools": TOOLS, "instructions": "Be brief."}, prompt_caching=False)
    assert body["system"] == [{"type": "text", "text": "Be brief.\n\nUse tools."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [SIGNED, {"type": "tool_use", "id": "call_1_x", "name": "exec_command",
                                                       "input": {"cmd": "ls"}}]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1_x", "content": "a.txt"},
                                              {"type": "text", "text": "and quickly"}]
    assert body["tools"][1] == {"name": "apply_patch", "input_schema": body["tools"][1]["input_schema"],
                                "description": body["tools"][1]["description"]}
    assert body["stream"] is True and "cache_control" not in json.dumps(body)


def test_a_history_that_starts_with_the_assistant_gets_a_user_message_first() -> None:
    body = to_messages({"input": [{"role": "assistant", "content": "Earlier answer."}, USER]})
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(("asked", "options", "expected"), [
    ({"max_output_tokens": 300}, {}, 300),
    ({}, {"max_output_tokens": 9000}, 9000),
    ({}, {}, 64000),  # claude-sonnet-4-5's own limit
    ({}, {"model": "claude-3-5-haiku-latest"}, 8192),
    ({}, {"model": "kimi-k2"}, request.DEFAULT_MAX_TOKENS),
])
def test_max_tokens_is_the_clients_else_the_upstreams_else_the_models(asked: dict, options: dict,
                                                                         expected: int) -> None:
    assert to_messages({"input": "hi", **asked}, **options)["max_tokens"] == expected


def test_reasoning_effort_thinks_with_a_budget_below_max_tokens_or_says_it_did_not() -> None:
    body = {"model": "claude-opus-4-5", "input": "hi", "reasoning": {"effort": "high"}, "temperature": 0.3}
    sent = request.to_request(body, UpstreamOptions(send_reasoning_effort=True))
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert "temperature" not in sent.body and sent.unsent == {"temperature"}
    small = request.to_request({**body, "max_output_tokens": 1500}, UpstreamOptions(send_reasoning_effort=True))
    assert "thinking" not in small.body and "reasoning.effort" in small.unsent
    forced = request.to_request({**body, "tools": TOOLS, "tool_choice": "required"},
                                UpstreamOptions(send_reasoning_effort=True))
    assert forced.body["tool_choice"] == {"type": "any"} and "thinking" not in forced.body
    off = request.to_request(body, UpstreamOptions())
    assert "thinking" not in off.body and off.unsent == {"reasoning.effort"} and off.body["temperature"] == 0.3


def test_breakpoints_mark_tools_system_and_the_last_two_user_turns_at_most_four() -> None:
    items = [USER, {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"},
             {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c2", "output": "ok"}]
    body = to_messages({"input": items, "tools": TOOLS, "instructions": "sys"})
    marked = [block for block in [*body["tools"], *body["system"], *(b for m in body["messages"] for b in m["content"])]
              if "cache_control" in block]
    assert len(marked) == 4
    assert marked[0] is body["tools"][-1] and marked[1] is body["system"][-1]
    assert marked[2]["tool_use_id"] == "c1" and marked[3]["tool_use_id"] == "c2"


def test_structured_output_and_the_end_user_are_said_the_messages_way() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    sent = request.to_request({"model": "claude-sonnet-4-5", "input": "hi", "safety_identifier": "u1",
                               "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}}},
                              UpstreamOptions())
    assert sent.body["output_format"] == {"type": "json_schema", "schema": schema}
    assert sent.headers == {"anthropic-beta": request.STRUCTURED_OUTPUTS_BETA}
    assert sent.body["metadata"] == {"user_id": "u1"}
    plain = to_messages({"input": "hi", "text": {"format": {"type": "json_object"}}})
    assert plain["system"][-1]["text"] == request.JSON_OBJECT


def test_another_servers_reasoning_is_left_out_with_a_note_and_an_altered_block_of_ours_refused() -> None:
    items = [USER, {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-openai"},
             {"role": "assistant", "content": "hello"}]
    sent = request.to_request({"model": "claude-sonnet-4-5", "input": items}, UpstreamOptions())
    assert sent.body["messages"][1]["content"] == [{"type": "text", "text": "hello", "cache_control":
                                                    {"type": "ephemeral"}}]
    assert sent.notes and "1 reasoning item" in sent.notes[0]
    broken = thinking.seal(SIGNED)[:-5] + "!"
    with pytest.raises(InvalidRequestError) as refused:
        request.to_request({"model": "m", "input": [USER, {"type": "reasoning", "encrypted_content": broken}]},
                           UpstreamOptions())
    assert refused.value.param == "input[1].encrypted_content"


def stream(events: list[dict[str, Any]]) -> list[Any]:
    reader = MessagesReader()
    return [out for event in events for out in reader(event)]


def test_a_stream_of_blocks_reads_as_text_sealed_thinking_tool_calls_usage_and_the_stop() -> None:
    read = stream([
        {"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 100,
                                                        "cache_creation_input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Plan"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "ping"},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "xyz"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Running."}},
        {"type": "content_block_start", "index": 3,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": '{"cmd":'}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": '"ls"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}},
        {"type": "message_stop"},
    ])
    assert read == [
        ReasoningDelta(text="Plan"),
        ReasoningSealed(encrypted_content=thinking.seal({"type": "thinking", "thinking": "Plan", "signature": "sig"})),
        ReasoningSealed(encrypted_content=thinking.seal({"type": "redacted_thinking", "data": "xyz"})),
        TextDelta(text="Running."),
        ToolCallDelta(index=3, call_id="toolu_1", name="exec_command"),
        ToolCallDelta(index=3, arguments='{"cmd":'), ToolCallDelta(index=3, arguments='"ls"}'),
        UsageReported(input_tokens=115, output_tokens=42, total_tokens=157, cached_tokens=100),
        Finished(reason="tool_calls"),
    ]
    _, events = run(read)
    assert_valid_stream(events)
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "reasoning", "message", "function_call"]
    assert final["output"][1]["summary"] == [] and thinking.unseal(final["output"][1]["encrypted_content"]) == {
        "type": "redacted_thinking", "data": "xyz"}
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 100


@pytest.mark.parametrize(("reason", "status"), [("end_turn", "completed"), ("max_tokens", "incomplete"),
                                                ("refusal", "incomplete"), ("pause_turn", "completed")])
def test_stop_reasons_end_the_response_as_they_should(reason: str, status: str) -> None:
    _, events = run(read_message({"type": "message", "content": [{"type": "text", "text": "x"}],
                                  "stop_reason": reason, "usage": {"input_tokens": 1, "output_tokens": 1}}))
    assert events[-1]["response"]["status"] == status


def test_what_cannot_be_read_fails_the_response_and_an_error_event_names_its_type() -> None:
    assert stream([{"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "x"}}])[0] \
        .code == answer.PROTOCOL_ERROR
    [failed] = stream([{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    assert (failed.code, failed.message) == ("overloaded_error", "Overloaded")


def test_rate_limit_headers_keep_their_names_and_gain_openais() -> None:
    assert ratelimit_headers({"anthropic-ratelimit-requests-remaining": "0",
                              "anthropic-ratelimit-tokens-reset": "2026-12-07T14:00:00Z",
                              "anthropic-ratelimit-input-tokens-limit": "1000"}) == {
        "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-tokens-reset": "2026-12-07T14:00:00Z",
        "anthropic-ratelimit-input-tokens-limit": "1000", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-tokens": "2026-12-07T14:00:00Z"}


@pytest.mark.parametrize("protocol", ["responses", "responses-repaired"])
def test_a_responses_upstream_is_never_sent_a_claude_thinking_block(protocol: str) -> None:
    """A conversation that moves from Claude to OpenAI (failover): the block is left out, the row's notes say so."""
    openai_reasoning = {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-openai"}
    items = [USER, {"type": "reasoning", "summary": [], "encrypted_content": thinking.seal(SIGNED)},
             openai_reasoning, {"role": "assistant", "content": "hello"}]
    options = UpstreamOptions(accepts_custom_tools=protocol == "responses")
    sent = dialect_for("responses", protocol).to_request({"model": "gpt-5", "input": items}, options)
    assert sent.body["input"] == [USER, openai_reasoning, {"role": "assistant", "content": "hello"}]
    assert sent.notes == ("1 Claude thinking block(s) left out: this upstream cannot read them",)
    plain = dialect_for("responses", protocol).to_request({"model": "gpt-5", "input": [USER]}, options)
    assert plain.notes == () and plain.body["input"] == [USER]


def test_a_chat_request_becomes_messages_without_thinking_while_a_tool_result_is_pending() -> None:
    from bridge.dialects.anthropic import chat

    call = {"id": "c.1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    body = {"model": "claude-opus-4-5", "max_completion_tokens": 4000, "stop": "END", "reasoning_effort": "low",
            "user": "u9", "messages": [{"role": "developer", "content": "Rules."}, {"role": "user", "content": "go"},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": "c.1", "content": "done"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto", "temperature": 0.5}
    sent = chat.to_request(body, UpstreamOptions(send_reasoning_effort=True, prompt_caching=False)).body
    assert (sent["max_tokens"], sent["stop_sequences"], sent["metadata"], sent["temperature"]) == (
        4000, ["END"], {"user_id": "u9"}, 0.5)
    assert "thinking" not in sent and sent["system"] == [{"type": "text", "text": "Rules."}]
    assert sent["messages"][1]["content"] == [{"type": "tool_use", "id": "c_1", "name": "f", "input": {"a": 1}}]
    assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c_1", "content": "done"}]
    fresh = chat.to_request({**body, "messages": body["messages"][:2]}, UpstreamOptions(send_reasoning_effort=True))
    assert fresh.body["thinking"] == {"type": "enabled", "budget_tokens": 2000} and "temperature" not in fresh.body
    with pytest.raises(InvalidRequestError) as refused:
        chat.check({**body, "logprobs": True})
    assert refused.value.param == "logprobs"
