"""Tool repair for a Responses server that takes only function tools (vLLM-like): found by the probe, then repaired.

The scripted mock refuses, as vLLM does ("tools.N.type: Input should be 'function'"), any
non-function tool, custom or local_shell item, and encrypted reasoning. Relayed untouched,
Codex's request fails there; once the probe's findings are applied, turn 1 comes back with
the client's own tool kinds (a custom_tool_call for apply_patch) and turn 2, carrying that
call and its output, is taken too.
"""
from __future__ import annotations

import json

import httpx

from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream
from upstreams.probe.capabilities import applied, probe_capabilities

PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run.", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch", "description": "Patch.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}},
    {"type": "namespace", "name": "multi_agent_v1", "description": "Agents.", "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Spawn.", "parameters": {"type": "object"}}]},
    {"type": "web_search", "external_web_access": False},
]
USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a.txt"}]}
CALLS_PATCH = {"functions_only": True, "chunks": [
    {"tool": {"index": 0, "id": "call_p", "name": "apply_patch", "arguments": json.dumps({"input": PATCH})}},
    {"finish": "tool_calls"}]}
ANSWERS = {"functions_only": True, "chunks": [{"text": "Added a.txt."}, {"finish": "stop"}]}


def turn(gateway: Gateway, key: str, items: list[dict]) -> tuple[httpx.Response, list[dict]]:
    body = {"model": "qwen3-coder", "stream": True, "store": False, "tools": TOOLS, "tool_choice": "auto",
            "include": ["reasoning.encrypted_content"], "input": items}
    response = httpx.post(f"{gateway.url}/v1/responses", json=body, headers={"authorization": f"Bearer {key}"},
                          timeout=30)
    return response, [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


def test_the_probe_finds_what_the_server_refuses_and_the_passthrough_repairs_it_over_two_turns(
        gateway: Gateway, scripted: MockUpstream, active_key: str) -> None:
    upstream = Upstream.objects.create(name="vllm", base_url=scripted.url, api="responses",
                                       models="qwen3-coder")
    scripted.script(ANSWERS)
    before, _ = turn(gateway, active_key, [USER])
    assert before.status_code == 400 and "Input should be 'function'" in before.text  # relayed untouched

    found = {f.check: f for f in probe_capabilities(upstream).findings}
    for check in ("custom tools", "namespace tools", "hosted tools", "encrypted reasoning"):
        assert not found[check].ok and "refused" in found[check].detail, found[check]
    assert applied(upstream, probe_capabilities(upstream)) == {
        "accepts_custom_tools": False, "accepts_namespace_tools": False, "accepts_hosted_tools": False,
        "accepts_encrypted_reasoning": False, "accepts_images": True}  # its Chat endpoint takes an image

    scripted.script(CALLS_PATCH, ANSWERS)
    first, events = turn(gateway, active_key, [USER])
    assert first.status_code == 200
    assert_valid_stream(events)
    [call] = events[-1]["response"]["output"]
    assert (call["type"], call["name"], call["input"], call["call_id"]) == ("custom_tool_call", "apply_patch",
                                                                            PATCH, "call_p")
    sent = scripted.requests()[-1]["body"]
    assert {tool["type"] for tool in sent["tools"]} == {"function"}
    assert [tool["name"] for tool in sent["tools"]] == ["exec_command", "apply_patch", "multi_agent_v1__spawn_agent"]

    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"}
    output = {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"}
    second, events = turn(gateway, active_key, [USER, reasoning, call, output])
    assert second.status_code == 200 and events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Added a.txt."
    history = scripted.requests()[-1]["body"]["input"]
    assert [item["type"] for item in history] == ["message", "function_call", "function_call_output"]
    assert json.loads(history[1]["arguments"]) == {"input": PATCH}
    row = wait_for_log(second.headers["x-request-id"])
    assert (row.mode, row.outcome, row.upstream_name) == ("bridge", "ok", "vllm")
