"""What the mock upstream answers: the founding experiments (E1-E3, docs/responses-bridge.md §6) as *steps*.

A scenario is a list of steps; each request plays the next step, the last one repeating
(upstreams/mock/server.py plays them). A step is a dict:

    status, headers, content_type   the HTTP answer (200, {}, text/event-stream)
    chunks    Chat chunks, streamed as ``data:`` lines then ``data: [DONE]``; shorthands:
              {"text"}, {"reasoning"}, {"tool": {index, id, name, arguments}}, each with
              an optional "role" (as real servers send in the first delta),
              {"finish": reason}, {"usage": {...}}; a dict with "choices" goes as is
    raw       strings written verbatim instead (CRLF framing, comments, broken JSON)
    body      a JSON value or string sent as the whole body (errors, non-stream answers)
    repeat    the first chunk is sent this many times (a long answer without a long script)
    done      false leaves out ``data: [DONE]``;  delay: seconds between pieces
    pause     [n, seconds]: silent this long after piece n (a model thinking, a busy server);
              n = -1: after the headers, before the first piece (a long prompt's prefill)
    gate      true: after the first piece, wait until POST /_mock/release
    hang      true: after the pieces, keep the connection open and silent
    functions_only  true: a Responses request with another tool type, a custom or local_shell
              item, or encrypted reasoning gets 400, as vLLM answers it (the tool repair's tests)
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

Step = dict[str, Any]

E1_TEXT = ["Hello", " world", "! 你好世界！"]

E2_TOOLS: list[dict[str, Any]] = [
    {"tool": {"index": 0, "id": "call_apply_123", "name": "apply_patch", "arguments": ""}},
    {"tool": {"index": 1, "id": "call_shell_456", "name": "local_shell", "arguments": ""}},
    {"tool": {"index": 0, "arguments": '{"files":[{"path":"test.js",'}},
    {"tool": {"index": 1, "arguments": '{"command":'}},
    {"tool": {"index": 0, "arguments": '"content":"console.log(\'Hello World\')"}]}'}},
    {"tool": {"index": 1, "arguments": '"ls -la /tmp"}'}},
    {"finish": "tool_calls"},
]


def _tools5() -> list[dict[str, Any]]:
    """Five calls, 3-5 fragments each, interleaved round-robin (E2's stress case, docs/responses-bridge.md §6)."""
    calls = [
        ("read_file", '{"path": "src/main.py"}'),
        ("write_file", '{"path": "out.txt", "content": "line one\\nline two"}'),
        ("shell", '{"command": ["bash", "-lc", "ls -la"]}'),
        ("web_search", '{"query": "codex gateway \\u4f60\\u597d"}'),
        ("apply_patch", '{"input": "*** Begin Patch\\n*** End Patch"}'),
    ]
    pieces = []
    for index, (_, args) in enumerate(calls):
        n = 3 + index % 3
        size = -(-len(args) // n)
        pieces.append([args[i : i + size] for i in range(0, len(args), size)])
    chunks: list[dict[str, Any]] = [
        {"tool": {"index": i, "id": f"call_{name}_{i}", "name": name, "arguments": ""}}
        for i, (name, _) in enumerate(calls)
    ]
    for round_ in range(max(len(p) for p in pieces)):
        for index, parts in enumerate(pieces):
            if round_ < len(parts):
                chunks.append({"tool": {"index": index, "arguments": parts[round_]}})
    return chunks + [{"finish": "tool_calls"}]


SCENARIOS: dict[str, list[Step]] = {
    "text": [{"chunks": [*({"text": t} for t in E1_TEXT), {"finish": "stop"}]}],
    "tools": [{"chunks": E2_TOOLS}],
    "tools5": [{"chunks": _tools5()}],
    "errors": [
        {"status": 429, "headers": {"Retry-After": "3", "X-RateLimit-Remaining": "0",
                                    "X-RateLimit-Reset": "3s", "X-RateLimit-Limit-Requests": "60"},
         "body": {"error": {"message": "Rate limit reached, try again in 3s", "type": "rate_limit_error",
                            "param": None, "code": "rate_limit_exceeded"}}},
        {"status": 429, "headers": {"Retry-After": "3", "X-RateLimit-Remaining": "0",
                                    "X-RateLimit-Reset": "3s", "X-RateLimit-Limit-Requests": "60"},
         "body": {"error": {"message": "Rate limit reached, try again in 3s", "type": "rate_limit_error",
                            "param": None, "code": "rate_limit_exceeded"}}},
        {"status": 500, "headers": {"Retry-After": "5"}, "body": "upstream exploded"},
        {"chunks": [*({"text": t} for t in E1_TEXT), {"finish": "stop"}]},
    ],
    "scripted": [{"chunks": [{"text": "no script posted"}, {"finish": "stop"}]}],
}
# `make run`'s demo serves every scenario from one port: the model name picks it
# (demo-tools, demo-tools5, demo-errors; anything else gets the E1 text).
DEMO = "demo"
_RATE_LIMITED = SCENARIOS["errors"][0]
# demo-errors fails every time, the same way for the same prompt (README, "Two commands"): a 429
# with its back-off headers, unless the prompt names another failure.
DEMO_ERRORS: dict[str, Step] = {
    "429": _RATE_LIMITED,
    "500": SCENARIOS["errors"][2],
    "400": {"status": 400, "body": {"error": {
        "message": "This model's maximum context length is 32768 tokens; your messages resulted in 40000 tokens.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}},
    "cut": {"chunks": [{"text": "This answer is cut"}], "done": False},  # a stream that stops mid-answer
}


def demo_error(prompt: str) -> Step:
    """Return demo-errors' failure for a prompt: the first of 500, 400 or ``cut`` it names, else a 429."""
    lowered = prompt.lower()
    return next((step for word, step in DEMO_ERRORS.items() if word != "429" and word in lowered), _RATE_LIMITED)


def expand_chunk(piece: dict[str, Any], model: str, created: int) -> dict[str, Any]:
    """Turn a shorthand piece into a real Chat completion chunk."""
    if "choices" in piece or "error" in piece:
        return piece
    chunk: dict[str, Any] = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                             "created": created, "model": model}
    delta: dict[str, Any] = {"role": piece["role"]} if "role" in piece else {}
    finish = None
    if "text" in piece:
        delta["content"] = piece["text"]
    if "reasoning" in piece:
        delta["reasoning_content"] = piece["reasoning"]
    if "tool" in piece:
        tool = piece["tool"]
        call: dict[str, Any] = {"index": tool.get("index", 0)}
        if tool.get("id"):
            call.update(id=tool["id"], type="function")
        fn = {k: tool[k] for k in ("name", "arguments") if k in tool}
        call["function"] = fn
        delta["tool_calls"] = [call]
    if "finish" in piece:
        finish = piece["finish"]
    if "usage" in piece:
        chunk["usage"] = piece["usage"]
        if not delta and finish is None:
            chunk["choices"] = []
            return chunk
    chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return chunk


def completion_from_chunks(chunks: list[dict[str, Any]], model: str, created: int) -> dict[str, Any]:
    """Assemble the non-streaming answer the chunks stand for."""
    content, reasoning, finish, usage = "", "", "stop", None
    calls: dict[int, dict[str, Any]] = {}
    for piece in chunks:
        chunk = expand_chunk(piece, model, created)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            content += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls", []):
                _add_fragment(calls, call)
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


def _add_fragment(calls: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    """Add one streamed tool-call fragment to the whole call it belongs to (by its index)."""
    slot = calls.setdefault(call["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    slot["id"] = call.get("id") or slot["id"]
    fn = call.get("function", {})
    slot["function"]["name"] = fn.get("name") or slot["function"]["name"]
    slot["function"]["arguments"] += fn.get("arguments") or ""


def responses_events(text: str, model: str, calls: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A canonical Responses stream, for testing passthrough to Responses-speaking upstreams.

    The text (if any) is one message; each of ``calls`` ({call_id, name, arguments}) a
    function_call item after it, its arguments in one delta.
    """
    # Fresh ids per answer, as a real server gives: the gateway stores responses by their ids.
    rid, mid = f"resp_mock{uuid.uuid4().hex}", f"msg_mock{uuid.uuid4().hex}"
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model, "output": []}
    usage = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {**base, "status": "in_progress"}}]
    output: list[dict[str, Any]] = []
    if text or not calls:
        item = {"id": mid, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        events += [
            {"type": "response.output_item.added", "output_index": 0,
             "item": {**item, "status": "in_progress", "content": []}},
            {"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0,
             "part": {"type": "output_text", "text": "", "annotations": []}},
            {"type": "response.output_text.delta", "item_id": mid, "output_index": 0, "content_index": 0,
             "delta": text},
            {"type": "response.output_text.done", "item_id": mid, "output_index": 0, "content_index": 0, "text": text},
            {"type": "response.content_part.done", "item_id": mid, "output_index": 0, "content_index": 0,
             "part": item["content"][0]},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        ]
        output.append(item)
    for call in calls or []:
        index, fid = len(output), f"fc_mock{uuid.uuid4().hex}"
        done = {"id": fid, "type": "function_call", "status": "completed", "call_id": call["call_id"],
                "name": call["name"], "arguments": call["arguments"]}
        events += [
            {"type": "response.output_item.added", "output_index": index,
             "item": {**done, "status": "in_progress", "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "item_id": fid, "output_index": index,
             "delta": call["arguments"]},
            {"type": "response.function_call_arguments.done", "item_id": fid, "output_index": index,
             "arguments": call["arguments"]},
            {"type": "response.output_item.done", "output_index": index, "item": done},
        ]
        output.append(done)
    events.append({"type": "response.completed",
                   "response": {**base, "status": "completed", "output": output, "usage": usage}})
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def calls_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool calls a step's chunks make, whole: {call_id, name, arguments}, in index order."""
    calls: dict[int, dict[str, Any]] = {}
    for piece in chunks:
        tool = piece.get("tool")
        if isinstance(tool, dict):
            call = calls.setdefault(tool.get("index", 0), {"call_id": "", "name": "", "arguments": ""})
            call["call_id"] = tool.get("id") or call["call_id"]
            call["name"] = tool.get("name") or call["name"]
            call["arguments"] += tool.get("arguments", "")
    return [calls[index] for index in sorted(calls)]


FUNCTIONS_ONLY_ITEMS = ("custom_tool_call", "custom_tool_call_output", "local_shell_call", "local_shell_call_output")


def functions_only_problem(request: dict[str, Any]) -> str | None:
    """What a server that takes only function tools (vLLM) refuses in a Responses request, as it says it; None: fine."""
    for n, tool in enumerate(request.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            return f"tools.{n}.type: Input should be 'function'"
    items = request.get("input")
    for n, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("type") in FUNCTIONS_ONLY_ITEMS:
            return f"input.{n}: Input tag '{item['type']}' does not match any of the expected tags"
        if isinstance(item, dict) and item.get("type") == "reasoning" and item.get("encrypted_content"):
            return f"input.{n}.encrypted_content: encrypted reasoning is not supported"
    return None


DEMO_MODELS = ["demo-text", "demo-tools", "demo-tools5", "demo-errors"]
MOCK_CONTEXT = 32768  # the context window the mock reports (as vLLM does, `max_model_len`)
DEMO_COMMANDS = {"tools": ["echo hello from codex-gateway"],
                 "tools5": [f"echo step {n} of 5" for n in range(1, 6)]}


def codex_turn(name: str, request: dict[str, Any]) -> Step | None:
    """The demo's tool scenarios for a client that declares ``exec_command`` (Codex): harmless commands, then an answer.

    E2's tool calls (apply_patch, local_shell) are tools Codex 0.169 does not declare:
    it answered each with "unsupported call" and asked again, about 900 times in 90 s
    (issue 13). So a client that declares exec_command gets calls to it, and once every
    output is back, a final answer that quotes the last one: the turn ends.
    """
    if name not in DEMO_COMMANDS or "exec_command" not in _declared(request):
        return None
    output = _tool_output(request)
    if output is not None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        last = lines[-1] if lines else "(no output)"
        return {"chunks": [{"text": f"The demo ran its command; the output ends with: {last[:200]}"},
                           {"finish": "stop"}]}
    calls = [{"tool": {"index": n, "id": f"call_demo_{n}", "name": "exec_command",
                       "arguments": json.dumps({"cmd": command})}}
             for n, command in enumerate(DEMO_COMMANDS[name])]
    return {"chunks": [*calls, {"finish": "tool_calls"}]}


def _declared(request: dict[str, Any]) -> set[Any]:
    """The names of the function tools a Chat request declares."""
    tools = request.get("tools")
    return {(t.get("function") or {}).get("name") for t in tools if isinstance(t, dict)} \
        if isinstance(tools, list) else set()


def _tool_output(request: dict[str, Any]) -> str | None:
    """The text of the tool output a Chat request ends with, or None when it ends otherwise."""
    messages = request.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
            and messages[-1].get("role") == "tool":
        return str(messages[-1].get("content") or "")
    return None


def last_user_text(request: dict[str, Any]) -> str:
    """The text of a Chat request's last user message (its parts joined), "" when it has none."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def required_call(request: dict[str, Any]) -> Step | None:
    """A call of the request's first function tool when ``tool_choice`` requires one, as a real server makes."""
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if request.get("tool_choice") != "required" or not tools:
        return None
    name = str((tools[0].get("function") or {}).get("name", "tool"))
    return {"chunks": [{"tool": {"index": 0, "id": "call_demo_1", "name": name, "arguments": "{}"}},
                       {"finish": "tool_calls"}]}
