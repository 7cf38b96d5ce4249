"""An Anthropic Messages upstream behind /v1/responses, through real daphne and the strict Anthropic mock.

The mock (upstreams/mock/anthropic.py) refuses what the real API refuses: no max_tokens, roles
that do not alternate, a tool_use without its tool_result next, a thinking block without its
signature, a tool turn that does not start with its thinking when thinking is on. Every
scenario is checked streamed (each event against the Open Responses models) and not.
"""
from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from django.core.management import call_command

from bridge.dialects.anthropic import thinking
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

MODEL = "claude-sonnet-4-5"
TOOLS = [{"type": "function", "name": "exec_command", "description": "Run a command.",
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
         {"type": "custom", "name": "apply_patch", "description": "Patch files."}]
USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]}
TEXT = {"chunks": [{"text": "Hello"}, {"text": " from Claude."}, {"finish": "stop"}]}
THINK_AND_CALL = {"chunks": [
    {"reasoning": "The user wants files. "}, {"reasoning": "I will run ls."},
    {"tool": {"index": 0, "id": "toolu_01", "name": "exec_command", "arguments": ""}},
    {"tool": {"index": 0, "arguments": '{"cmd": '}}, {"tool": {"index": 0, "arguments": '"ls -la"}'}},
    {"finish": "tool_calls"}]}
TWO_CALLS = {"chunks": [
    {"tool": {"index": 0, "id": "toolu_a", "name": "exec_command", "arguments": '{"cmd"'}},
    {"tool": {"index": 0, "arguments": ': "pwd"}'}},
    {"tool": {"index": 1, "id": "toolu_b", "name": "apply_patch", "arguments": '{"input": "*** Begin Patch\\n'}},
    {"tool": {"index": 1, "arguments": '*** End Patch"}'}},
    {"finish": "tool_calls"}]}


@pytest.fixture
def claude(scripted: MockUpstream) -> Upstream:
    return Upstream.objects.create(name="claude", base_url=scripted.url, api="anthropic", models="claude-*",
                                   api_key="sk-ant-test-key", send_reasoning_effort=True)


def ask(gateway: Gateway, key: str, items: list[dict[str, Any]], *, stream: bool = True,
        **extra: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    body = {"model": MODEL, "stream": stream, "store": False, "tools": TOOLS, "input": items, **extra}
    response = httpx.post(f"{gateway.url}/v1/responses", json=body, headers={"authorization": f"Bearer {key}"},
                          timeout=30)
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    return response, events


def sent(scripted: MockUpstream) -> dict[str, Any]:
    """The last request the mock received, headers and body."""
    return scripted.requests()[-1]


def test_text_streams_as_a_responses_stream_with_the_messages_request_anthropic_expects(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(TEXT)
    response, events = ask(gateway, active_key, [USER], instructions="Be brief.", max_output_tokens=500,
                           temperature=0.2, safety_identifier="user-7")
    assert response.status_code == 200, response.text
    assert_valid_stream(events)
    final = events[-1]["response"]
    assert (final["status"], final["output"][0]["content"][0]["text"]) == ("completed", "Hello from Claude.")
    request = sent(scripted)
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "sk-ant-test-key" and "authorization" not in request["headers"]
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    body = request["body"]
    assert (body["max_tokens"], body["temperature"], body["metadata"], body["stream"]) == (500, 0.2,
                                                                                           {"user_id": "user-7"}, True)
    assert body["system"][0]["text"] == "Be brief."
    assert [tool["name"] for tool in body["tools"]] == ["exec_command", "apply_patch"]
    assert body["tools"][1]["input_schema"]["required"] == ["input"]  # the custom tool: one string
    usage = final["usage"]
    assert usage["input_tokens"] == usage["input_tokens_details"]["cached_tokens"] + (
        usage["input_tokens"] - usage["input_tokens_details"]["cached_tokens"]) and usage["output_tokens"] > 0
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.mode, row.outcome, row.upstream_name, row.input_tokens) == ("bridge", "ok", "claude",
                                                                            usage["input_tokens"])


def test_without_a_cap_the_models_known_limit_is_sent_never_a_small_one(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(TEXT)
    assert ask(gateway, active_key, [USER])[0].status_code == 200
    assert sent(scripted)["body"]["max_tokens"] == 64000
    Upstream.objects.filter(pk=claude.pk).update(max_output_tokens=20000)
    assert ask(gateway, active_key, [USER])[0].status_code == 200
    assert sent(scripted)["body"]["max_tokens"] == 20000


def test_a_tool_turn_with_thinking_sends_the_signed_thinking_back_before_its_tool_use(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(THINK_AND_CALL, TEXT)
    first, events = ask(gateway, active_key, [USER], reasoning={"effort": "medium"})
    assert first.status_code == 200, first.text
    assert_valid_stream(events)
    reasoning, call = events[-1]["response"]["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"][0]["text"] == "The user wants files. I will run ls."
    assert reasoning["encrypted_content"].startswith("cgw-anthropic-thinking.v1.")
    assert (call["type"], call["name"], call["call_id"], json.loads(call["arguments"])) == (
        "function_call", "exec_command", "toolu_01", {"cmd": "ls -la"})
    thinking = sent(scripted)["body"]["thinking"]
    assert thinking == {"type": "enabled", "budget_tokens": 8192}

    output = {"type": "function_call_output", "call_id": "toolu_01", "output": "a.txt b.txt"}
    # A client that keeps only what it must: the summary dropped, encrypted_content kept.
    kept = {"type": "reasoning", "id": reasoning["id"], "summary": [],
            "encrypted_content": reasoning["encrypted_content"]}
    second, events = ask(gateway, active_key, [USER, kept, call, output], reasoning={"effort": "medium"})
    assert second.status_code == 200, second.text  # the strict mock checked the signature and the order
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hello from Claude."
    messages = sent(scripted)["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assistant = messages[1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "tool_use"]
    assert assistant[0]["thinking"] == "The user wants files. I will run ls."
    assert assistant[1] == {"type": "tool_use", "id": "toolu_01", "name": "exec_command", "input": {"cmd": "ls -la"}}
    result = {key: value for key, value in messages[2]["content"][0].items() if key != "cache_control"}
    assert result == {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt b.txt"}


def test_an_altered_thinking_block_is_refused_by_the_upstream_or_by_the_gateway_naming_it(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(THINK_AND_CALL)
    _, events = ask(gateway, active_key, [USER], reasoning={"effort": "low"})
    reasoning, call = events[-1]["response"]["output"]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "x"}
    block = thinking.unseal(reasoning["encrypted_content"])
    assert block is not None
    reworded = {**reasoning, "encrypted_content": thinking.seal({**block, "thinking": "Something else."})}
    response, _ = ask(gateway, active_key, [USER, reworded, call, output], reasoning={"effort": "low"})
    assert response.status_code == 400  # the signature no longer matches: Anthropic's refusal, relayed
    error = response.json()["error"]
    assert (set(error), error["type"]) == ({"message", "type", "param", "code"}, "invalid_request_error")
    assert "signature" in error["message"]

    requests = len(scripted.requests())
    garbled = {**reasoning, "encrypted_content": reasoning["encrypted_content"][:-8] + "!!"}
    response, _ = ask(gateway, active_key, [USER, garbled, call, output], reasoning={"effort": "low"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[1].encrypted_content"
    assert len(scripted.requests()) == requests  # refused before anything was sent


def test_several_tool_uses_come_back_in_order_with_their_own_tool_kinds(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(TWO_CALLS)
    for stream in (True, False):
        response, events = ask(gateway, active_key, [USER], stream=stream, parallel_tool_calls=False)
        assert response.status_code == 200, response.text
        output = events[-1]["response"]["output"] if stream else response.json()["output"]
        if stream:
            assert_valid_stream(events)
        assert [(item["type"], item["call_id"]) for item in output] == [("function_call", "toolu_a"),
                                                                       ("custom_tool_call", "toolu_b")]
        assert output[1]["input"] == "*** Begin Patch\n*** End Patch"
        assert sent(scripted)["body"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_max_tokens_ends_the_response_incomplete(gateway: Gateway, scripted: MockUpstream, active_key: str,
                                                 claude: Upstream) -> None:
    scripted.script({"chunks": [{"text": "A long answer, cut"}, {"finish": "length"}]})
    for stream in (True, False):
        response, events = ask(gateway, active_key, [USER], stream=stream, max_output_tokens=5)
        final = events[-1]["response"] if stream else response.json()
        assert (final["status"], final["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


@pytest.mark.parametrize(("status", "kind", "headers"), [
    (429, "rate_limit_error", {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}),
    (529, "overloaded_error", {}),
    (500, "api_error", {}),
])
def test_an_http_error_keeps_its_status_and_back_off_and_names_the_anthropic_error(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream, status: int, kind: str,
        headers: dict[str, str]) -> None:
    scripted.script({"status": status, "headers": headers,
                     "body": {"type": "error", "error": {"type": kind, "message": f"{kind} happened"}}})
    response, _ = ask(gateway, active_key, [USER])
    assert response.status_code == status
    assert response.json() == {"error": {"message": f"{kind} happened", "type": kind, "param": None, "code": kind}}
    for name, value in headers.items():
        assert response.headers[name] == value
    if "anthropic-ratelimit-requests-remaining" in headers:
        assert response.headers["x-ratelimit-remaining-requests"] == "0"  # the name OpenAI clients read


def test_an_error_event_mid_stream_fails_the_response(gateway: Gateway, scripted: MockUpstream, active_key: str,
                                                      claude: Upstream) -> None:
    scripted.script({"anthropic": [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]})
    response, events = ask(gateway, active_key, [USER])
    assert response.status_code == 200
    assert_valid_stream(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "overloaded_error", "message": "Overloaded"}
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.error_type) == ("upstream_error", "overloaded_error")


def test_cache_breakpoints_make_each_turn_read_the_last_ones_prefix(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script(THINK_AND_CALL)
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "cache test " * 200}]}]
    usages = []
    for turn in range(4):
        response, events = ask(gateway, active_key, items, instructions="You are a careful agent. " * 50)
        output = events[-1]["response"]["output"]
        usages.append(events[-1]["response"]["usage"])
        body = sent(scripted)["body"]
        marks = sum("cache_control" in block for block in [*body["tools"], *body["system"],
                                                             *(b for m in body["messages"] for b in m["content"])])
        assert marks <= 4
        call = next(item for item in output if item["type"] == "function_call")
        items = [*items, *output, {"type": "function_call_output", "call_id": call["call_id"],
                                   "output": f"turn {turn}"}]
    cached = [usage["input_tokens_details"]["cached_tokens"] for usage in usages]
    # Each turn reads the whole of the turn before from the cache (the mock counts only exact prefixes).
    assert cached[1:] == [usage["input_tokens"] for usage in usages[:-1]], usages


def test_what_messages_cannot_take_is_refused_naming_the_field(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    response, _ = ask(gateway, active_key, [USER], presence_penalty=0.5)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "presence_penalty"
    assert scripted.requests() == []


def test_a_conversation_moves_from_claude_to_a_chat_upstream_and_back(gateway: Gateway, scripted: MockUpstream,
                                                                      active_key: str) -> None:
    """Claude answers turn 1 with thinking; overloaded on turn 2, which a Chat upstream answers; Claude takes turn 3.

    The Chat upstream is never sent the thinking block (the row says it was left out); Claude
    gets it back in its place, before its tool_use, with the Chat upstream's answer after.
    """
    Upstream.objects.create(name="claude", base_url=scripted.url, api="anthropic", models="claude-*", priority=10)
    Upstream.objects.create(name="chat", base_url=scripted.base_url, models="claude-*")
    overloaded = {"status": 529, "body": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}
    scripted.script(THINK_AND_CALL, overloaded, {"chunks": [{"text": "From Chat."}, {"finish": "stop"}]}, TEXT)
    _, events = ask(gateway, active_key, [USER])
    turn_one = events[-1]["response"]["output"]
    items = [USER, *turn_one, {"type": "function_call_output", "call_id": "toolu_01", "output": "a.txt"}]

    second, events = ask(gateway, active_key, items)
    assert second.status_code == 200 and events[-1]["response"]["output"][0]["content"][0]["text"] == "From Chat."
    chat_request = sent(scripted)
    assert chat_request["path"] == "/v1/chat/completions"
    assert "cgw-anthropic-thinking" not in json.dumps(chat_request["body"])
    row = wait_for_log(second.headers["x-request-id"])
    assert (row.upstream_name, row.failed_over, row.outcome) == ("chat", ",claude,", "ok")
    assert "encrypted content of 1 reasoning item(s) left out" in row.notes

    items += [*events[-1]["response"]["output"], {"role": "user", "content": "thanks"}]
    third, events = ask(gateway, active_key, items)
    assert third.status_code == 200 and events[-1]["response"]["status"] == "completed"
    messages = sent(scripted)["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [b["type"] for b in messages[1]["content"]] == ["thinking", "tool_use"]
    assert messages[3]["content"][0]["text"] == "From Chat."


def chat(gateway: Gateway, key: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": MODEL, "messages": messages, **extra}, timeout=30)


CHAT_TOOLS = [{"type": "function", "function": {"name": "exec_command", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}}]


def test_a_chat_client_runs_a_tool_loop_on_claude_streamed_and_whole(gateway: Gateway, scripted: MockUpstream,
                                                                     active_key: str, claude: Upstream) -> None:
    scripted.script(THINK_AND_CALL, TEXT, THINK_AND_CALL, TEXT)
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "list the files"}]
    streamed = chat(gateway, active_key, question, tools=CHAT_TOOLS, stream=True,
                    stream_options={"include_usage": True})
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]) == \
        "The user wants files. I will run ls."
    calls = [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert (calls[0]["id"], calls[0]["function"]["name"]) == ("toolu_01", "exec_command")
    assert json.loads("".join(call["function"]["arguments"] for call in calls)) == {"cmd": "ls -la"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0
    body = sent(scripted)["body"]
    assert body["system"][0]["text"] == "Be brief." and body["tools"][0]["name"] == "exec_command"

    call = {"id": "toolu_01", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd": "ls"}'}}
    loop = [*question, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt"}]
    answered = chat(gateway, active_key, loop, tools=CHAT_TOOLS)
    assert answered.status_code == 200, answered.text
    said = answered.json()
    assert (said["object"], said["choices"][0]["message"]["content"], said["choices"][0]["finish_reason"]) == (
        "chat.completion", "Hello from Claude.", "stop")
    messages = sent(scripted)["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"][0]["type"] == "tool_result"

    whole = chat(gateway, active_key, question, tools=CHAT_TOOLS)
    message = whole.json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "exec_command", "arguments": '{"cmd": "ls -la"}'}
    assert message["reasoning_content"] == "The user wants files. I will run ls."
    rows = wait_for_logs(4)
    assert {(row.endpoint, row.mode, row.outcome) for row in rows} == {("chat/completions", "bridge", "ok")}


def test_a_chat_stream_that_breaks_ends_with_an_error_chunk_and_what_chat_cannot_say_is_refused(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    scripted.script({"anthropic": [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]})
    broken = chat(gateway, active_key, [{"role": "user", "content": "hi"}], stream=True)
    last = json.loads([line for line in broken.text.splitlines() if line.startswith("data: {")][-1][6:])
    assert last == {"error": {"message": "Overloaded", "type": "upstream_error", "param": None,
                              "code": "overloaded_error"}}
    assert "[DONE]" not in broken.text
    refused = chat(gateway, active_key, [{"role": "user", "content": "hi"}], n=2)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "n"


def test_stored_responses_background_compaction_and_replay_work_on_claude(
        gateway: Gateway, scripted: MockUpstream, active_key: str, claude: Upstream) -> None:
    """The gateway's own features are the dialect's too: each goes through the one pipeline."""
    from logs.models import Recording
    from tests import waiting

    headers = {"authorization": f"Bearer {active_key}"}
    scripted.script(TEXT)
    first = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=30,
                       json={"model": MODEL, "input": "Remember: 42.", "store": True}).json()
    second = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=30,
                        json={"model": MODEL, "input": "What was it?", "previous_response_id": first["id"]})
    assert second.status_code == 200, second.text
    messages = sent(scripted)["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == "Hello from Claude."

    queued = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=30,
                        json={"model": MODEL, "input": "later", "background": True}).json()
    assert queued["status"] == "queued"
    done = waiting.until(lambda: (r := httpx.get(f"{gateway.url}/v1/responses/{queued['id']}", headers=headers,
                                                 timeout=10).json())["status"] == "completed" and r,
                         "the background response to complete", 20)
    assert done["output"][0]["content"][0]["text"] == "Hello from Claude."

    scripted.script({"chunks": [{"text": "Summary: the user wants 42."}, {"finish": "stop"}]})
    compacted = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=30, json={
        "model": MODEL, "stream": True, "store": False, "input": [USER, {"type": "compaction_trigger"}]})
    events = [json.loads(line[6:]) for line in compacted.text.splitlines() if line.startswith("data: {")]
    [item] = events[-1]["response"]["output"]
    assert item["type"] == "compaction" and sent(scripted)["path"] == "/v1/messages"

    Upstream.objects.filter(pk=claude.pk).update(record_next=1)
    scripted.script(THINK_AND_CALL)
    recorded = httpx.post(f"{gateway.url}/v1/responses", headers=headers, timeout=30,
                          json={"model": MODEL, "input": [USER], "tools": TOOLS, "stream": True, "store": False})
    request_id = recorded.headers["x-request-id"]
    recording = waiting.until(lambda: Recording.objects.filter(request_id=request_id).first(), "the recording", 20)
    assert recording.dialect == "anthropic"
    out = io.StringIO()
    call_command("replay", request_id, stdout=out)  # exits 1 on any difference
    assert "no difference" in out.getvalue(), out.getvalue()
