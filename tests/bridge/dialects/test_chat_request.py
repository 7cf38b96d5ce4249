"""Tests for bridge.dialects.chat: Responses requests become Chat requests that strict servers accept.

See docs/responses-bridge.md §1 and §4.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.dialects import UpstreamOptions, UpstreamRequest
from bridge.dialects.chat.messages import NOT_EXECUTED
from bridge.dialects.chat.request import to_request
from bridge.errors import InvalidRequestError
from bridge.events import ToolTarget

# Real requests captured from Codex CLI 0.169 (copied from the product spec).
SPEC = Path(__file__).resolve().parents[2] / "fixtures"
CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def translate(input_: Any, options: UpstreamOptions | None = None, **fields: Any) -> UpstreamRequest:
    return to_request({"model": "m", "input": input_, **fields}, options or UpstreamOptions())


def messages(input_: Any, options: UpstreamOptions | None = None, **fields: Any) -> list[dict]:
    return translate(input_, options, **fields).body["messages"]


def message(role: str, *texts: str, part: str = "input_text") -> dict:
    return {"type": "message", "role": role, "content": [{"type": part, "text": t} for t in texts]}


def fcall(call_id: str, name: str = "f", arguments: str = "{}", **extra: Any) -> dict:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments, **extra}


def output(call_id: str, text: Any = "ok", kind: str = "function_call_output") -> dict:
    return {"type": kind, "call_id": call_id, "output": text}


def tool_call(call_id: str, name: str = "f", arguments: str = "{}") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_calls(*calls: dict, content: str | None = None) -> dict:
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def tool(call_id: str, content: str = "ok") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def user(content: Any) -> dict:
    return {"role": "user", "content": content}


DEVELOPER_IN_PLACE = UpstreamOptions(accepts_developer_role=True)
REPLAY = UpstreamOptions(replay_reasoning=True)


def reasoning(*, content: list[str] | None = None, summary: list[str] | None = None) -> dict:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": t} for t in summary or []],
        "content": [{"type": "reasoning_text", "text": t} for t in content] if content is not None else None,
        "encrypted_content": "gAAAA-opaque",
    }


MESSAGE_CASES = [
    pytest.param("hi", None, {}, [user("hi")], id="string-input-is-one-user-message"),
    pytest.param(
        [message("developer", "base prompt"), message("system", "sys"), message("user", "hi")],
        None,
        {"instructions": "Be brief."},
        [{"role": "system", "content": "Be brief.\n\nbase prompt\n\nsys"}, user("hi")],
        id="instructions-system-and-developer-merge-into-one-leading-system-message",
    ),
    pytest.param(
        [message("user", "hi"), message("developer", "late rule"), message("system", "late sys"), message("user", "x")],
        None,
        {},
        [{"role": "system", "content": "late rule\n\nlate sys"}, user("hi"), user("x")],
        id="later-developer-and-system-messages-merge-too",
    ),
    pytest.param(
        [message("developer", "base"), message("user", "hi"), message("developer", "late rule")],
        DEVELOPER_IN_PLACE,
        {},
        [{"role": "system", "content": "base"}, user("hi"), {"role": "developer", "content": "late rule"}],
        id="developer-role-kept-in-place-when-accepted",
    ),
    pytest.param([{"role": "user", "content": "hi"}], None, {}, [user("hi")], id="role-only-message-without-type"),
    pytest.param(
        [{"role": "user", "content": [{"type": "input_text", "text": "a"}]}], None, {}, [user("a")],
        id="role-only-message-with-parts",
    ),
    pytest.param([message("user", "a", "b")], None, {}, [user("a\nb")], id="text-parts-flatten-to-a-string"),
    pytest.param([message("user", "", "b", "")], None, {}, [user("b")], id="empty-text-parts-dropped"),
    pytest.param(
        [message("user", ""), {"role": "user", "content": ""}, {"role": "user", "content": []}, message("user", "x")],
        None,
        {},
        [user("x")],
        id="empty-messages-dropped",
    ),
    pytest.param(
        [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_text", "text": ""},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"},
            {"type": "input_image", "image_url": "https://x/y.png"},
        ]}],
        None,
        {},
        [user([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ])],
        id="images-keep-a-content-list",
    ),
    pytest.param(
        [message("assistant", "Hello", " there", part="output_text"),
         {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}],
        None,
        {},
        [{"role": "assistant", "content": "Hello\n there"}, {"role": "assistant", "content": "No."}],
        id="assistant-output-text-and-refusal",
    ),
    pytest.param(
        [message("user", "go"), fcall("call_1", "exec_command", '{"cmd":"ls"}'), output("call_1", "a.txt")],
        None,
        {},
        [user("go"), assistant_calls(tool_call("call_1", "exec_command", '{"cmd":"ls"}')), tool("call_1", "a.txt")],
        id="function-call-and-output",
    ),
    pytest.param(
        [message("assistant", "Let me check.", part="output_text"), fcall("c1", "a"), fcall("c2", "b"),
         output("c2", "two"), output("c1", "one")],
        None,
        {},
        [assistant_calls(tool_call("c1", "a"), tool_call("c2", "b"), content="Let me check."),
         tool("c1", "one"), tool("c2", "two")],
        id="text-and-parallel-calls-merge-into-one-assistant-message",
    ),
    pytest.param(
        [fcall("c1"), output("c1", "one"), fcall("c2"), output("c2", "two")],
        None,
        {},
        [assistant_calls(tool_call("c1")), tool("c1", "one"), assistant_calls(tool_call("c2")), tool("c2", "two")],
        id="sequential-calls-stay-separate-turns",
    ),
    pytest.param(
        [fcall("c1"), message("user", "(interrupted)"), output("c1", "late")],
        None,
        {},
        [assistant_calls(tool_call("c1")), tool("c1", "late"), user("(interrupted)")],
        id="output-paired-by-call-id-across-a-message",
    ),
    pytest.param(
        [fcall("call_1"), output("call_1", "first"), message("user", "again"), fcall("call_1"),
         output("call_1", "second")],
        None,
        {},
        [assistant_calls(tool_call("call_1")), tool("call_1", "first"), user("again"),
         assistant_calls(tool_call("call_1")), tool("call_1", "second")],
        id="call-ids-reused-across-turns-keep-their-own-outputs",
    ),
    pytest.param(
        [output("c1", "early"), fcall("c1")],
        None,
        {},
        [assistant_calls(tool_call("c1")), tool("c1", "early")],
        id="output-before-its-call-is-placed-after-it",
    ),
    pytest.param(
        [fcall("c1"), message("user", "never mind")],
        None,
        {},
        [assistant_calls(tool_call("c1")), tool("c1", NOT_EXECUTED), user("never mind")],
        id="call-without-output-gets-a-synthetic-answer",
    ),
    pytest.param(
        [message("user", "hi"), output("ghost", "orphan text")],
        None,
        {},
        [user("hi"), user("orphan text")],
        id="output-without-call-becomes-a-user-message",
    ),
    pytest.param(
        [fcall("c1"), output("c1", [
            {"type": "input_text", "text": "line"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "output_text", "text": "more"},
        ])],
        None,
        {},
        [assistant_calls(tool_call("c1")),
         tool("c1", "line\n[image omitted: the upstream model cannot receive images in tool output]\nmore")],
        id="output-content-array-flattens-to-text",
    ),
    pytest.param(
        [{"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch",
          "input": "*** Begin Patch\n*** End Patch"},
         output("c1", "Done!", kind="custom_tool_call_output")],
        None,
        {},
        [assistant_calls(tool_call("c1", "apply_patch", json.dumps({"input": "*** Begin Patch\n*** End Patch"}))),
         tool("c1", "Done!")],
        id="custom-tool-call-wraps-input",
    ),
    pytest.param(
        [{"type": "local_shell_call", "call_id": "c1", "status": "completed",
          "action": {"type": "exec", "command": ["ls", "-la"], "working_directory": "/tmp", "timeout_ms": 1000,
                     "env": {}}},
         output("c1", "total 0", kind="local_shell_call_output")],
        None,
        {},
        [assistant_calls(tool_call("c1", "local_shell",
                                   json.dumps({"command": ["ls", "-la"], "workdir": "/tmp", "timeout_ms": 1000}))),
         tool("c1", "total 0")],
        id="local-shell-call",
    ),
    pytest.param(
        [fcall("c1", "spawn_agent", '{"task":"t"}', namespace="multi_agent_v1"), output("c1")],
        None,
        {},
        [assistant_calls(tool_call("c1", "multi_agent_v1__spawn_agent", '{"task":"t"}')), tool("c1")],
        id="namespaced-call-is-flattened",
    ),
    pytest.param(
        [message("user", "q"), reasoning(content=["thought"]), message("assistant", "a", part="output_text")],
        None,
        {},
        [user("q"), {"role": "assistant", "content": "a"}],
        id="reasoning-dropped-by-default",
    ),
    pytest.param(
        [message("user", "q"), reasoning(content=["step 1", "step 2"], summary=["short"]),
         message("assistant", "a", part="output_text")],
        REPLAY,
        {},
        [user("q"), {"role": "assistant", "content": "a", "reasoning_content": "step 1\nstep 2"}],
        id="reasoning-replayed-from-content",
    ),
    pytest.param(
        [reasoning(summary=["I should list files"]), fcall("c1"), output("c1")],
        REPLAY,
        {},
        [{**assistant_calls(tool_call("c1")), "reasoning_content": "I should list files"}, tool("c1")],
        id="reasoning-replayed-from-summary-onto-the-call-message",
    ),
    pytest.param(
        [reasoning(content=["lost"]), message("user", "new question")],
        REPLAY,
        {},
        [user("new question")],
        id="reasoning-before-no-assistant-message-dropped",
    ),
    pytest.param(
        [message("user", "q"), {"type": "web_search_call", "id": "ws_1", "status": "completed"},
         {"type": "additional_tools", "tools": []}, {"type": "compaction", "encrypted_content": "x"},
         {"type": "item_reference", "id": "msg_1"}, {"type": "tool_search_call", "call_id": "t"},
         {"type": "mystery_item"}, {"content": "no role, no type"}],
        None,
        {},
        [user("q")],
        id="other-items-dropped",
    ),
]


@pytest.mark.parametrize(("input_", "options", "fields", "expected"), MESSAGE_CASES)
def test_request_messages(input_: Any, options: UpstreamOptions | None, fields: dict, expected: list[dict]) -> None:
    """Input items become the listed Chat messages."""
    assert messages(input_, options, **fields) == expected


def test_request_reasoning_never_forwards_encrypted_content() -> None:
    """Opaque encrypted reasoning means nothing to another server and is never sent."""
    body = translate([reasoning(content=["t"]), message("assistant", "a", part="output_text")], REPLAY).body
    assert "gAAAA" not in json.dumps(body)


FUNCTION_TOOL = {"type": "function", "name": "read_file", "description": "Read a file.", "strict": True,
                 "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
READ_FILE = {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
                                              "parameters": FUNCTION_TOOL["parameters"]}}
STRICT_READ_FILE = {"type": "function", "function": {**READ_FILE["function"], "strict": True}}
EMPTY = {"type": "object", "properties": {}}

TOOL_CASES = [
    pytest.param([FUNCTION_TOOL], [STRICT_READ_FILE], {"read_file": ToolTarget("function", "read_file")},
                 id="responses-function-strict-passed-on"),
    pytest.param([{**FUNCTION_TOOL, "strict": False}], [READ_FILE], {"read_file": ToolTarget("function", "read_file")},
                 id="responses-function-not-strict-unsaid"),
    pytest.param([READ_FILE], [READ_FILE], {"read_file": ToolTarget("function", "read_file")},
                 id="chat-shaped-function"),
    pytest.param([{"type": "function", "function": {"name": "apply_patch"}}],
                 [{"type": "function", "function": {"name": "apply_patch", "parameters": EMPTY}}],
                 {"apply_patch": ToolTarget("function", "apply_patch")}, id="parameters-default"),
    pytest.param(
        [{"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
          "tools": [{"type": "function", "name": "spawn_agent", "parameters": EMPTY},
                    {"type": "function", "name": "wait_agent", "description": "Wait.", "parameters": EMPTY}]}],
        [{"type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "parameters": EMPTY}},
         {"type": "function", "function": {"name": "multi_agent_v1__wait_agent", "description": "Wait.",
                                           "parameters": EMPTY}}],
        {"multi_agent_v1__spawn_agent": ToolTarget("function", "spawn_agent", "multi_agent_v1"),
         "multi_agent_v1__wait_agent": ToolTarget("function", "wait_agent", "multi_agent_v1")},
        id="namespace-flattened",
    ),
    pytest.param(
        [{"type": "local_shell"}],
        [{"type": "function", "function": {
            "name": "local_shell",
            "description": "Run a shell command on the user's machine and return its output.",
            "parameters": {"type": "object", "properties": {
                "command": {"type": "array", "items": {"type": "string"},
                            "description": "The command and its arguments."},
                "workdir": {"type": "string", "description": "Working directory to run the command in."},
                "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds."},
            }, "required": ["command"]}}}],
        {"local_shell": ToolTarget("local_shell", "local_shell")},
        id="local-shell",
    ),
    pytest.param(
        [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}, {"type": "code_interpreter"},
         {"type": "image_generation"}, {"type": "computer_use_preview"}, {"type": "mcp", "server_label": "x"},
         {"type": "shiny_new_tool"}, "not-a-tool", {"type": "function"}],
        [],
        {},
        id="hosted-unknown-and-nameless-tools-dropped",
    ),
    pytest.param(
        [{"type": "function", "name": "mcp.fs/read file", "parameters": EMPTY}],
        [{"type": "function", "function": {"name": "mcp_fs_read_file", "parameters": EMPTY}}],
        {"mcp_fs_read_file": ToolTarget("function", "mcp.fs/read file")},
        id="invalid-characters-replaced",
    ),
    pytest.param(
        [{"type": "function", "name": "a.b", "parameters": EMPTY},
         {"type": "function", "name": "a_b", "parameters": EMPTY}],
        [{"type": "function", "function": {"name": "a_b", "parameters": EMPTY}},
         {"type": "function", "function": {"name": "a_b_2", "parameters": EMPTY}}],
        {"a_b": ToolTarget("function", "a.b"), "a_b_2": ToolTarget("function", "a_b")},
        id="collisions-resolved-in-order",
    ),
]


@pytest.mark.parametrize(("tools", "expected", "tool_map"), TOOL_CASES)
def test_request_tools(tools: list, expected: list[dict], tool_map: dict) -> None:
    """Responses tools become Chat function tools, and the map restores what they were."""
    request = translate("hi", tools=tools, tool_choice="auto", parallel_tool_calls=True)
    assert request.body.get("tools", []) == expected
    assert request.tools == tool_map


def test_request_custom_tool_becomes_a_function_taking_raw_input() -> None:
    """A freeform tool is offered as a function with one string `input`, grammar included in the description."""
    custom = {"type": "custom", "name": "run_sql", "description": "Run a query.",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: select"}}
    request = translate("hi", tools=[custom])
    [function] = request.body["tools"]
    assert function["function"]["name"] == "run_sql"
    assert function["function"]["parameters"] == {
        "type": "object", "properties": {"input": {"type": "string", "description": "The raw freeform text input."}},
        "required": ["input"],
    }
    description = function["function"]["description"]
    assert description.startswith("Run a query.")
    assert "freeform" in description and "start: select" in description
    assert request.tools == {"run_sql": ToolTarget("custom", "run_sql")}


def test_request_codexs_apply_patch_is_described_with_an_example_a_small_model_can_follow() -> None:
    """Codex's own description says not to wrap the patch in JSON: a function call must. Ours says how, and shows it."""
    codex = {"type": "custom", "name": "apply_patch", "description": "Use the apply_patch tool. Do not wrap in JSON.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
    [function] = translate("hi", tools=[codex]).body["tools"]
    description = function["function"]["description"]
    assert "Do not wrap" not in description and "start: begin_patch" not in description
    assert "the string `input`" in description
    example = description[description.index("*** Begin Patch"):]
    assert example.endswith("*** End Patch") and "*** Add File: " in example and "*** Update File: " in example


def test_request_long_names_are_truncated_and_stay_distinct() -> None:
    """Names over 64 characters are cut with a short hash, so two long names sharing a prefix differ."""
    long_a, long_b = "x" * 70 + "_alpha", "x" * 70 + "_beta"
    request = translate("hi", tools=[{"type": "function", "name": n} for n in (long_a, long_b)])
    names = [t["function"]["name"] for t in request.body["tools"]]
    assert all(CHAT_NAME.match(n) for n in names)
    assert len(set(names)) == 2
    assert [request.tools[n].name for n in names] == [long_a, long_b]
    again = translate("hi", tools=[{"type": "function", "name": n} for n in (long_a, long_b)])
    assert [t["function"]["name"] for t in again.body["tools"]] == names


def test_request_without_tools_sends_no_tool_fields() -> None:
    """With no tool left, tool_choice and parallel_tool_calls would be rejected, so none is sent."""
    body = translate("hi", tools=[{"type": "web_search"}], tool_choice="auto", parallel_tool_calls=True).body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


NAMED_TOOLS = [
    FUNCTION_TOOL,
    {"type": "custom", "name": "apply_patch"},
    {"type": "local_shell"},
    {"type": "namespace", "name": "ns", "description": "", "tools": [{"type": "function", "name": "go"}]},
]


def choose(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        pytest.param("auto", "auto", id="auto"),
        pytest.param("none", "none", id="none"),
        pytest.param("required", "required", id="required"),
        pytest.param("sometimes", "auto", id="unknown-word"),
        pytest.param({"type": "function", "name": "read_file"}, choose("read_file"), id="function"),
        pytest.param({"type": "function", "function": {"name": "read_file"}}, choose("read_file"), id="chat-shaped"),
        pytest.param({"type": "custom", "name": "apply_patch"}, choose("apply_patch"), id="custom"),
        pytest.param({"type": "local_shell"}, choose("local_shell"), id="local-shell"),
        pytest.param({"type": "function", "name": "missing"}, "auto", id="unknown-function"),
        pytest.param({"type": "allowed_tools", "mode": "required", "tools": []}, "required", id="allowed-tools"),
        pytest.param({"type": "web_search_preview"}, "auto", id="hosted"),
        pytest.param({"type": "mcp", "server_label": "x"}, "auto", id="mcp"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_request_tool_choice(choice: Any, expected: Any) -> None:
    """tool_choice is translated to a name the upstream knows, or relaxed to auto."""
    body = translate("hi", tools=NAMED_TOOLS, tool_choice=choice).body
    assert body.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("fields", "options", "expected"),
    [
        pytest.param({"temperature": 0.3, "top_p": 0.5, "user": "u"}, UpstreamOptions(),
                     {"temperature": 0.3, "top_p": 0.5, "user": "u"}, id="sampling-and-user-pass"),
        pytest.param({"presence_penalty": 0.5, "frequency_penalty": -1}, UpstreamOptions(),
                     {"presence_penalty": 0.5, "frequency_penalty": -1}, id="penalties-pass"),
        pytest.param({"temperature": True, "presence_penalty": "0.5"}, UpstreamOptions(), {},
                     id="sampling-must-be-numbers"),
        pytest.param({"max_output_tokens": 99}, UpstreamOptions(), {"max_tokens": 99}, id="max-tokens"),
        pytest.param({"max_output_tokens": 99}, UpstreamOptions(max_tokens_field="max_completion_tokens"),
                     {"max_completion_tokens": 99}, id="max-completion-tokens"),
        pytest.param({"reasoning": {"effort": "high", "summary": "auto"}}, UpstreamOptions(), {}, id="effort-not-sent"),
        pytest.param({"reasoning": {"effort": "high"}}, UpstreamOptions(send_reasoning_effort=True),
                     {"reasoning_effort": "high"}, id="effort-sent-when-enabled"),
        pytest.param({"reasoning": {"effort": None}}, UpstreamOptions(send_reasoning_effort=True), {},
                     id="effort-must-be-a-string"),
        pytest.param({"prompt_cache_key": "thread-1", "prompt_cache_retention": "24h"}, UpstreamOptions(), {},
                     id="cache-hints-kept-by-the-gateway"),
        pytest.param({"prompt_cache_key": "thread-1", "prompt_cache_retention": "24h"},
                     UpstreamOptions(send_prompt_cache_key=True),
                     {"prompt_cache_key": "thread-1", "prompt_cache_retention": "24h"},
                     id="cache-hints-sent-when-enabled"),
        pytest.param({"text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"},
                                          "strict": True}, "verbosity": "low"}},
                     UpstreamOptions(),
                     {"response_format": {"type": "json_schema",
                                          "json_schema": {"name": "answer", "schema": {"type": "object"},
                                                          "strict": True}}, "verbosity": "low"},
                     id="json-schema-and-verbosity"),
        pytest.param({"top_logprobs": 3, "include": ["message.output_text.logprobs"]}, UpstreamOptions(),
                     {"logprobs": True, "top_logprobs": 3}, id="logprobs-with-alternatives"),
        pytest.param({"include": ["message.output_text.logprobs", "reasoning.encrypted_content"]}, UpstreamOptions(),
                     {"logprobs": True}, id="logprobs-without-alternatives"),
        pytest.param({"top_logprobs": 3}, UpstreamOptions(), {}, id="top-logprobs-alone-asks-for-none"),
        pytest.param({"text": {"format": {"type": "json_object"}}}, UpstreamOptions(),
                     {"response_format": {"type": "json_object"}}, id="json-object"),
        pytest.param({"text": {"format": {"type": "text"}}}, UpstreamOptions(), {}, id="text-format-sends-nothing"),
    ],
)
def test_request_fields(fields: dict, options: UpstreamOptions, expected: dict) -> None:
    """Generation settings map to their Chat names; only the listed ones reach the upstream."""
    body = translate("hi", options, **fields).body
    assert {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options")} == expected


@pytest.mark.parametrize(
    ("reasoning", "options", "unsent"),
    [
        pytest.param({"effort": "high"}, UpstreamOptions(), {"reasoning.effort"}, id="effort-left-out"),
        pytest.param({"effort": "high"}, UpstreamOptions(send_reasoning_effort=True), set(), id="effort-sent"),
        pytest.param({"summary": "auto"}, UpstreamOptions(), set(), id="no-effort-asked"),
    ],
)
def test_request_names_the_settings_it_left_out(reasoning: dict, options: UpstreamOptions, unsent: set[str]) -> None:
    """A reasoning effort the upstream is not sent is named, so the Response object does not claim it."""
    assert translate("hi", options, reasoning=reasoning).unsent == unsent


def test_request_never_forwards_responses_only_fields() -> None:
    """Fields a Chat server does not know (or must not get) are left out."""
    body = translate(
        "hi",
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="k",
        client_metadata={"x": "y"},
        metadata={"a": "b"},
        truncation="auto",
        reasoning={"summary": "auto"},
        previous_response_id="resp_1",
        background=False,
        service_tier="auto",
        stream_options={"include_obfuscation": False},
        instructions="",
    ).body
    assert body == {"model": "m", "messages": [user("hi")], "stream": True, "stream_options": {"include_usage": True}}


def test_request_always_streams_and_asks_for_usage() -> None:
    """The Chat request streams even for stream:false, and asks for usage unless told not to."""
    assert translate("hi", stream=False).body["stream"] is True
    body = translate("hi", UpstreamOptions(send_stream_options=False)).body
    assert body["stream"] is True and "stream_options" not in body


def test_request_model_is_rewritten_when_configured() -> None:
    """The upstream's model name replaces the client's only when one is configured."""
    assert translate("hi").body["model"] == "m"
    assert translate("hi", UpstreamOptions(model="qwen3:8b")).body["model"] == "qwen3:8b"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"input": "hi"}, "model", id="model-missing"),
        pytest.param({"model": "", "input": "hi"}, "model", id="model-empty"),
        pytest.param({"model": 3, "input": "hi"}, "model", id="model-not-a-string"),
        pytest.param({"model": "m"}, "input", id="input-missing"),
        pytest.param({"model": "m", "input": {"role": "user"}}, "input", id="input-an-object"),
        pytest.param({"model": "m", "input": [message("user", "a"), "b"]}, "input[1]", id="item-not-an-object"),
        pytest.param({"model": "m", "input": "hi", "tools": {"type": "function"}}, "tools", id="tools-not-a-list"),
    ],
)
def test_request_rejects_malformed_requests(body: dict, param: str) -> None:
    """Wrong shapes are the client's fault and name the parameter."""
    with pytest.raises(InvalidRequestError) as raised:
        to_request(body, UpstreamOptions())
    assert raised.value.param == param
    assert raised.value.status == 400


def load(name: str) -> dict:
    return json.loads((SPEC / name).read_text())


@pytest.mark.parametrize("name", ["codex-0.169-request.json", "codex-0.169-request-after-tool-call.json"])
def test_request_real_codex_requests_translate_cleanly(name: str) -> None:
    """Codex 0.169's own requests give one leading system message and only valid function tools."""
    body = load(name)
    request = to_request(body, UpstreamOptions())
    chat = request.body
    roles = [m["role"] for m in chat["messages"]]
    assert roles[0] == "system" and "system" not in roles[1:] and "developer" not in roles
    assert chat["messages"][0]["content"].startswith("You are a coding agent running in the Codex CLI")
    names = [t["function"]["name"] for t in chat["tools"]]
    assert all(t["type"] == "function" for t in chat["tools"])
    assert all(CHAT_NAME.match(n) for n in names)
    assert len(set(names)) == len(names)
    assert "multi_agent_v1__spawn_agent" in names
    assert request.tools["multi_agent_v1__spawn_agent"] == ToolTarget("function", "spawn_agent", "multi_agent_v1")
    assert "web_search" not in names and "multi_agent_v1" not in names
    assert (chat["tool_choice"], chat["parallel_tool_calls"], chat["stream"]) == ("auto", True, True)
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "reasoning"):
        assert key not in chat
    assert json.loads(json.dumps(chat)) == chat


def test_request_real_codex_tool_turn_pairs_call_and_output() -> None:
    """After a tool call, the assistant tool_calls message is followed at once by its tool message."""
    chat = to_request(load("codex-0.169-request-after-tool-call.json"), UpstreamOptions()).body["messages"]
    [index] = [i for i, m in enumerate(chat) if m.get("tool_calls")]
    assert chat[index]["tool_calls"] == [tool_call("call_1", "exec_command", '{"cmd": "echo gateway-ok > proof.txt"}')]
    assert chat[index + 1]["role"] == "tool"
    assert chat[index + 1]["tool_call_id"] == "call_1"
    assert chat[index + 1]["content"].startswith("Chunk ID: e85808")
    assert chat[index - 1] == user("make proof")


def test_request_does_not_modify_the_client_body() -> None:
    """Translation reads the body; the IO side can still echo it untouched."""
    body = load("codex-0.169-request-after-tool-call.json")
    snapshot = json.dumps(body, sort_keys=True)
    to_request(body, UpstreamOptions(replay_reasoning=True))
    assert json.dumps(body, sort_keys=True) == snapshot
