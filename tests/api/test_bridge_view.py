"""POST /v1/responses bridged to a Chat-only upstream, through real daphne, read by the openai SDK."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.bridge.helpers import assert_spec_response, assert_spec_stream, assert_valid_stream
from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
E1 = [{"text": "Hello"}, {"text": " world"}, {"text": "! 你好世界！"}, {"finish": "stop"}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "apply_patch", "parameters": {"type": "object"}}},
              {"type": "local_shell"}]


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def raw_events(gateway: Gateway, key: str, body: dict) -> tuple[httpx.Response, list[dict]]:
    response = httpx.post(f"{gateway.url}/v1/responses", json={"stream": True, **body},
                          headers={"authorization": f"Bearer {key}"}, timeout=30)
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    return response, events


def test_e1_text_reaches_the_sdk_stream_accumulator(gateway: Gateway, scripted: MockUpstream,
                                                    chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": E1})
    with sdk(gateway, active_key).responses.stream(model="mock-model", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hello", " world", "! 你好世界！"]
    assert final.output_text == "Hello world! 你好世界！"
    assert final.status == "completed" and final.usage.total_tokens == 12
    [seen] = scripted.requests()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["stream"] is True and seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["body"]["messages"] == [{"role": "user", "content": "hi"}]
    [row] = wait_for_logs(1)
    assert (row.mode, row.outcome, row.stream, row.input_tokens, row.output_tokens) == ("bridge", "ok", True, 5, 7)


def test_e1_raw_stream_is_the_canonical_sequence(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                                 active_key: str) -> None:
    scripted.script({"chunks": E1})
    response, events = raw_events(gateway, active_key, {"model": "mock-model", "input": "hi"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert_valid_stream(events)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hello world! 你好世界！"


def logprob_chunk(text: str, logprob: float, alternative: str) -> dict:
    """A Chat chunk as vLLM and llama.cpp stream it with logprobs: true, top_logprobs: 1."""
    token = {"token": text, "logprob": logprob, "bytes": list(text.encode()),
             "top_logprobs": [{"token": alternative, "logprob": logprob - 1, "bytes": list(alternative.encode())}]}
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None,
                         "logprobs": {"content": [token]}}]}


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_log_probabilities_reach_the_sdk_when_asked_for(gateway: Gateway, scripted: MockUpstream,
                                                        chat_upstream: Upstream, active_key: str, stream: bool) -> None:
    scripted.script({"chunks": [logprob_chunk("Hi", -0.1, "Yo"), logprob_chunk("!", -0.3, "."), {"finish": "stop"}]})
    client = sdk(gateway, active_key)
    asked = {"model": "mock-model", "input": "hi", "top_logprobs": 1, "include": ["message.output_text.logprobs"]}
    if stream:
        with client.responses.stream(**asked) as events:
            deltas = [e.logprobs for e in events if e.type == "response.output_text.delta"]
            final = events.get_final_response()
        assert [[(lp.token, lp.logprob) for lp in delta] for delta in deltas] == [[("Hi", -0.1)], [("!", -0.3)]]
    else:
        final = client.responses.create(**asked)
    text = final.output[0].content[0]
    assert [(lp.token, lp.top_logprobs[0].token) for lp in text.logprobs] == [("Hi", "Yo"), ("!", ".")]
    assert final.top_logprobs == 1
    sent = scripted.requests()[-1]["body"]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 1)
    if stream:  # the same stream on the wire: spec-valid, items in order (the mock's step repeats)
        _, wire = raw_events(gateway, active_key, asked)
        assert_valid_stream(wire)


def test_non_streaming_response_via_the_sdk(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                            active_key: str) -> None:
    scripted.script({"chunks": E1})
    raw = sdk(gateway, active_key).responses.with_raw_response.create(model="mock-model", input="hi")
    response = raw.parse()
    assert response.output_text == "Hello world! 你好世界！" and response.status == "completed"
    assert scripted.requests()[0]["body"]["stream"] is True  # upstream is always streamed
    row = wait_for_log(raw.headers["x-request-id"])
    assert (row.stream, row.outcome, row.status) == (False, "ok", 200)


SPEC_REQUEST = {
    "model": "mock-model", "input": "read a and patch it", "instructions": "Be brief.",
    "tools": [{"type": "function", "name": "read_file", "description": "Read a file.",
               "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
              {"type": "custom", "name": "apply_patch", "description": "Patch files."},
              {"type": "web_search"}],
    "temperature": 0.2, "top_p": 0.9, "presence_penalty": 0.1, "max_output_tokens": 300,
    "metadata": {"run": "spec"}, "reasoning": {"effort": "low", "summary": "auto"}, "prompt_cache_key": "c-1",
}
SPEC_CHUNKS = [{"reasoning": "Think."}, {"text": "Reading."},
               {"tool": {"index": 0, "id": "call_read", "name": "read_file", "arguments": '{"path":"a"}'}},
               {"tool": {"index": 1, "id": "call_patch", "name": "apply_patch",
                         "arguments": '{"input":"*** Begin Patch\\n*** End Patch"}'}},
               {"finish": "tool_calls"}]


def test_bridged_answers_validate_against_open_responses(gateway: Gateway, scripted: MockUpstream,
                                                         chat_upstream: Upstream, active_key: str) -> None:
    """Every streamed event, the non-streamed answer and the stored one pass the Open Responses models."""
    scripted.script({"chunks": SPEC_CHUNKS})
    before = int(time.time())
    response, events = raw_events(gateway, active_key, SPEC_REQUEST)
    assert_valid_stream(events)
    assert_spec_stream(events)
    streamed = events[-1]["response"]
    assert [item["type"] for item in streamed["output"]] == ["reasoning", "message", "function_call",
                                                             "custom_tool_call"]
    headers = {"authorization": f"Bearer {active_key}"}
    answer = httpx.post(f"{gateway.url}/v1/responses", json={**SPEC_REQUEST, "stream": False}, headers=headers,
                        timeout=30).json()
    assert_spec_response(answer)
    for final in (streamed, answer):
        assert before <= final["created_at"] <= final["completed_at"] <= int(time.time())
        assert [tool["name"] for tool in final["tools"]] == ["read_file", "apply_patch"]  # web_search: not offered
        assert (final["temperature"], final["presence_penalty"], final["frequency_penalty"]) == (0.2, 0.1, 0)
        assert final["reasoning"] == {"effort": None, "summary": "auto"}  # the upstream is not sent an effort
        assert (final["store"], final["background"], final["service_tier"]) == (True, False, "default")
    sent = scripted.requests()[0]["body"]
    assert (sent["temperature"], sent["presence_penalty"], sent["max_tokens"]) == (0.2, 0.1, 300)
    stored = httpx.get(f"{gateway.url}/v1/responses/{answer['id']}", headers=headers, timeout=30).json()
    assert stored == answer


def test_e2_interleaved_tool_calls_come_back_whole(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                                   active_key: str) -> None:
    scripted.use("tools")
    # E2 declares Chat-shaped tools, which the SDK's own tool helper refuses: send them raw.
    body = {"model": "mock-model", "input": "patch and list", "extra_body": {"tools": CHAT_TOOLS}}
    with sdk(gateway, active_key).responses.stream(**body) as stream:
        final = stream.get_final_response()
    [patch, shell] = final.output
    assert (patch.type, patch.call_id, patch.name) == ("function_call", "call_apply_123", "apply_patch")
    assert json.loads(patch.arguments) == {"files": [{"path": "test.js", "content": "console.log('Hello World')"}]}
    assert (shell.type, shell.call_id) == ("local_shell_call", "call_shell_456")
    assert shell.action.command == ["bash", "-lc", "ls -la /tmp"]
    sent_tools = scripted.requests()[0]["body"]["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["apply_patch", "local_shell"]
    [row] = wait_for_logs(1)
    assert row.tool_calls == 2


def test_e2_five_tool_stress_keeps_every_call_apart(gateway: Gateway, scripted: MockUpstream,
                                                    chat_upstream: Upstream, active_key: str) -> None:
    scripted.use("tools5")
    names = ["read_file", "write_file", "shell", "web_search", "apply_patch"]
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in names]
    response, events = raw_events(gateway, active_key, {"model": "m", "input": "go", "tools": tools})
    assert_valid_stream(events)
    calls = events[-1]["response"]["output"]
    assert [(c["name"], c["call_id"]) for c in calls] == [(n, f"call_{n}_{i}") for i, n in enumerate(names)]
    assert json.loads(calls[1]["arguments"]) == {"path": "out.txt", "content": "line one\nline two"}
    assert json.loads(calls[3]["arguments"]) == {"query": "codex gateway 你好"}


def test_reasoning_streams_as_a_reasoning_item(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                               active_key: str) -> None:
    scripted.script({"chunks": [{"reasoning": "Think"}, {"reasoning": "ing."}, {"text": "42"}, {"finish": "stop"}]})
    with sdk(gateway, active_key).responses.stream(model="m", input="q") as stream:
        final = stream.get_final_response()
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Thinking."
    assert final.output_text == "42"


LENGTH = pytest.param({"chunks": [{"text": "cut"}, {"finish": "length"}]}, "incomplete", None, id="length")
DROP = pytest.param({"chunks": [{"text": "cut"}], "done": False}, "failed", "upstream_protocol_error", id="drop")
ERROR_CHUNK = pytest.param({"chunks": [{"text": "a"}, {"error": {"message": "overloaded", "code": "server_busy"}}],
                            "done": False}, "failed", "server_busy", id="error-chunk")
GARBAGE = pytest.param({"raw": ['data: {"choices": [{"delta": {"content": "a"}}]}\n\n', "data: {oops\n\n"]},
                       "failed", "upstream_protocol_error", id="unparsable-chunk")


@pytest.mark.parametrize(("step", "status", "code"), [LENGTH, DROP, ERROR_CHUNK, GARBAGE])
def test_a_stream_that_does_not_finish_cleanly_ends_with_a_terminal_event(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str, step: dict,
        status: str, code: str | None) -> None:
    scripted.script(step)
    response, events = raw_events(gateway, active_key, {"model": "m", "input": "q"})
    assert_valid_stream(events)
    terminal = events[-1]["response"]
    assert terminal["status"] == status
    if code:
        assert terminal["error"]["code"] == code
    else:
        assert terminal["incomplete_details"] == {"reason": "max_output_tokens"}
    row = wait_for_log(response.headers["x-request-id"])
    assert row.outcome == ("ok" if status == "incomplete" else "upstream_error")


def test_an_upstream_that_goes_quiet_gets_response_failed(gateway: Gateway, scripted: MockUpstream,
                                                          chat_upstream: Upstream, active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(read_timeout=0.5)
    scripted.script({"chunks": [{"text": "a"}], "done": False, "hang": True})
    response, events = raw_events(gateway, active_key, {"model": "m", "input": "q"})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_timeout"


def test_e3_on_responses_copies_status_and_back_off_headers(gateway: Gateway, scripted: MockUpstream,
                                                            chat_upstream: Upstream, active_key: str) -> None:
    scripted.use("errors")
    url, headers = f"{gateway.url}/v1/responses", {"authorization": f"Bearer {active_key}"}
    answers = [httpx.post(url, json={"model": "m", "input": "hi", "stream": True}, headers=headers)
               for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 500, 200]
    assert (answers[0].headers["retry-after"], answers[0].headers["x-ratelimit-remaining"]) == ("3", "0")
    assert answers[2].headers["retry-after"] == "5"
    assert answers[2].json()["error"]["message"] == "upstream exploded"
    assert "response.completed" in answers[3].text


def test_codex_request_is_translated_for_a_strict_chat_server(gateway: Gateway, scripted: MockUpstream,
                                                              chat_upstream: Upstream, active_key: str) -> None:
    codex_body = json.loads((FIXTURES / "codex-0.169-request-after-tool-call.json").read_text())
    scripted.script({"chunks": [{"text": "done"}, {"finish": "stop"}]})
    response, events = raw_events(gateway, active_key, codex_body)
    assert events[-1]["type"] == "response.completed"
    sent = scripted.requests()[0]["body"]
    roles = [m["role"] for m in sent["messages"]]
    assert roles[0] == "system" and roles.count("system") == 1
    call_at = next(i for i, m in enumerate(sent["messages"]) if m.get("tool_calls"))
    assert sent["messages"][call_at + 1] == {"role": "tool", "tool_call_id": "call_1",
                                             "content": codex_body["input"][-1]["output"]}
    assert all(t["type"] == "function" for t in sent["tools"])
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "reasoning"):
        assert key not in sent
