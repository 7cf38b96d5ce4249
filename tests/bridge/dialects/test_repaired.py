"""The repaired Responses dialect (bridge/dialects/repaired.py): Codex's tools for a server that takes only functions.

Pure: a request in, the repaired request and its tool map out; the server's stream in,
UpstreamEvents out, and ResponseStream giving the client back the tool kinds it declared.
"""
from __future__ import annotations

import json

from bridge.dialects.base import UpstreamOptions
from bridge.dialects.repaired import read_event, read_response, to_request
from bridge.events import ToolTarget
from bridge.stream import ResponseStream
from tests.bridge.helpers import assert_valid_stream, counter_ids, done_items

PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
EXEC = {"type": "function", "name": "exec_command", "description": "Run.", "parameters": {"type": "object"}}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Patch.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}
SPAWN = {"type": "function", "name": "spawn_agent", "description": "Spawn.", "parameters": {"type": "object"}}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Agents.", "tools": [SPAWN]}
CODEX_BODY = {
    "model": "qwen3", "stream": True, "store": False, "tool_choice": "auto", "parallel_tool_calls": True,
    "include": ["reasoning.encrypted_content"],
    "tools": [EXEC, APPLY_PATCH, AGENTS, {"type": "web_search", "external_web_access": False}],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a.txt"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c1", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
        {"type": "function_call", "call_id": "c2", "name": "spawn_agent", "namespace": "multi_agent_v1",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "agent 7"},
    ],
}
NOTHING_BUT_FUNCTIONS = UpstreamOptions(model="qwen3-coder", accepts_custom_tools=False, accepts_namespace_tools=False,
                                        accepts_hosted_tools=False, accepts_encrypted_reasoning=False)


def test_a_function_only_server_gets_functions_and_a_history_it_takes() -> None:
    sent = to_request(CODEX_BODY, NOTHING_BUT_FUNCTIONS)
    body = sent.body
    assert body["model"] == "qwen3-coder" and body["stream"] is True
    assert [(t["type"], t["name"]) for t in body["tools"]] == [
        ("function", "exec_command"), ("function", "apply_patch"), ("function", "multi_agent_v1__spawn_agent")]
    patch_tool = body["tools"][1]
    assert patch_tool["parameters"]["required"] == ["input"] and "*** Begin Patch" in patch_tool["description"]
    assert sent.tools == {"exec_command": ToolTarget("function", "exec_command"),
                          "apply_patch": ToolTarget("custom", "apply_patch"),
                          "multi_agent_v1__spawn_agent": ToolTarget("function", "spawn_agent", "multi_agent_v1")}
    assert body["include"] == [] and body["tool_choice"] == "auto"
    assert [item["type"] for item in body["input"]] == [
        "message", "function_call", "function_call_output", "function_call", "function_call_output"]
    patch_call, _, spawn_call, _ = body["input"][1:]
    assert (patch_call["name"], json.loads(patch_call["arguments"])) == ("apply_patch", {"input": PATCH})
    assert (spawn_call["name"], "namespace" in spawn_call) == ("multi_agent_v1__spawn_agent", False)
    assert body["input"][2] == {"type": "function_call_output", "call_id": "c1", "output": "Done!"}


def test_what_the_server_takes_is_sent_as_the_client_sent_it() -> None:
    sent = to_request(CODEX_BODY, UpstreamOptions(model="qwen3", accepts_hosted_tools=False))
    assert sent.body["tools"] == [EXEC, APPLY_PATCH, AGENTS]  # only the hosted tool left out
    assert sent.body["input"] == CODEX_BODY["input"] and sent.body["include"] == CODEX_BODY["include"]
    assert sent.tools["apply_patch"] == ToolTarget("custom", "apply_patch")


def server_stream(*calls: tuple[str, str, str], text: str = "") -> list[dict]:
    """What a function-only server streams: maybe text, then function calls, then response.completed."""
    events: list[dict] = [{"type": "response.created", "response": {"id": "r", "status": "in_progress"}}]
    if text:
        events.append({"type": "response.output_text.delta", "output_index": 0, "delta": text})
    for n, (call_id, name, arguments) in enumerate(calls, start=1 if text else 0):
        item = {"type": "function_call", "id": f"fc_{n}", "call_id": call_id, "name": name, "arguments": arguments}
        events += [{"type": "response.output_item.added", "output_index": n, "item": {**item, "arguments": ""}},
                   {"type": "response.function_call_arguments.delta", "output_index": n, "delta": arguments},
                   {"type": "response.output_item.done", "output_index": n, "item": item}]
    usage = {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}
    events.append({"type": "response.completed", "response": {"id": "r", "status": "completed", "usage": usage}})
    return events


def test_the_servers_function_calls_come_back_as_the_tools_the_client_declared() -> None:
    sent = to_request(CODEX_BODY, NOTHING_BUT_FUNCTIONS)
    machine = ResponseStream(model="qwen3", tools=sent.tools, request=CODEX_BODY, new_id=counter_ids())
    events = machine.start()
    for event in server_stream(("c3", "apply_patch", json.dumps({"input": PATCH})),
                               ("c4", "multi_agent_v1__spawn_agent", '{"task": "x"}'), text="On it."):
        for upstream_event in read_event(event):
            events += machine.feed(upstream_event)
    events += machine.finish()
    assert_valid_stream(events)
    # The function streams live; the custom call is whole at the end (ResponseStream's rule for custom tools).
    message, spawn, patch = done_items(events)
    assert message["content"][0]["text"] == "On it."
    assert (patch["type"], patch["name"], patch["input"], patch["call_id"]) == ("custom_tool_call", "apply_patch",
                                                                                PATCH, "c3")
    assert (spawn["type"], spawn["name"], spawn["namespace"]) == ("function_call", "spawn_agent", "multi_agent_v1")
    assert machine.response["usage"]["input_tokens"] == 20


def test_a_whole_response_and_a_failure_are_read_too() -> None:
    whole = {"id": "r", "status": "completed", "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
        {"type": "function_call", "call_id": "c", "name": "apply_patch", "arguments": json.dumps({"input": PATCH})}]}
    sent = to_request(CODEX_BODY, NOTHING_BUT_FUNCTIONS)
    machine = ResponseStream(model="qwen3", tools=sent.tools, request=CODEX_BODY, new_id=counter_ids())
    events = machine.start()
    for upstream_event in read_response(whole):
        events += machine.feed(upstream_event)
    events += machine.finish()
    assert [item["type"] for item in done_items(events)] == ["message", "custom_tool_call"]
    failed = read_event({"type": "response.failed", "response": {"status": "failed",
                                                                   "error": {"code": "server_error", "message": "x"}}})
    assert [(e.code, e.message) for e in failed] == [("server_error", "x")]
    assert read_event("junk")[0].code == "upstream_protocol_error"
