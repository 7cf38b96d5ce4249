"""The mock upstream as an Anthropic Messages server (``POST /v1/messages``): strict like the real API.

It refuses what Anthropic refuses (docs/anthropic.md): no ``max_tokens``, two messages of one
role in a row, a first message from the assistant, a ``tool_use`` without its ``tool_result``
first in the next user message, a result for no call, a thinking block without its signature
(or with one it did not sign), empty text, more than four cache breakpoints, a thinking
budget not below ``max_tokens``, sampling or a forced tool with thinking, a final assistant
tool turn that does not start with its thinking block when thinking is on, fields it does
not know. It plays the same steps as the Chat mock (upstreams/mock/scenarios.py), as
Messages events: text, ``reasoning`` as a signed thinking block, tools as ``tool_use`` with
fragmented ``input_json_delta``, the finish reason as ``stop_reason``; ``anthropic`` in a
step lists raw events instead (an ``error`` mid-stream, redacted thinking).

Its prompt cache is the real one's accounting, stricter: a prefix (tools, system, messages,
block by block) is written at each ``cache_control`` breakpoint, and read only where a
breakpoint ends a prefix written before; tokens are counted as bytes / 4.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

Step = dict[str, Any]

FIELDS = frozenset({"model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream", "temperature",
                    "top_p", "top_k", "stop_sequences", "metadata", "thinking", "output_format", "service_tier"})
STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "content_filter": "refusal"}
MAX_BREAKPOINTS = 4


def sign(thinking: str) -> str:
    """The signature the mock gives a thinking block, and checks when it comes back."""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def problem(request: Any, headers: dict[str, str]) -> str | None:
    """Return why the real API would refuse ``request`` (400 invalid_request_error), or None."""
    if "anthropic-version" not in headers:
        return "anthropic-version: header is required"
    if not isinstance(request, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(request) - FIELDS)
    if unknown:
        return f"{unknown[0]}: Extra inputs are not permitted"
    if not isinstance(request.get("max_tokens"), int) or request["max_tokens"] < 1:
        return "max_tokens: Field required"
    return _settings_problem(request) or _messages_problem(request) or _cache_problem(request)


def _settings_problem(request: dict[str, Any]) -> str | None:
    thinking = request.get("thinking")
    if not (isinstance(thinking, dict) and thinking.get("type") == "enabled"):
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024 or budget >= request["max_tokens"]:
        return "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
    if "temperature" in request or "top_k" in request:
        return "temperature may only be set to 1 when thinking is enabled"
    choice = request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _messages_problem(request: dict[str, Any]) -> str | None:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return "messages: first message must use the \"user\" role"
    calls: set[str] = set()
    for i, message in enumerate(messages):
        if i and message.get("role") == messages[i - 1].get("role"):
            return f"messages.{i}: roles must alternate between \"user\" and \"assistant\""
        blocks = message["content"] if isinstance(message.get("content"), list) else \
            [{"type": "text", "text": message.get("content")}]
        found = _blocks_problem(i, message.get("role"), blocks, calls) or _results_problem(i, blocks, calls)
        if found:
            return found
        calls = {b["id"] for b in blocks if b.get("type") == "tool_use"} if message.get("role") == "assistant" \
            else set()
    return _thinking_turn_problem(request, messages)


def _results_problem(i: int, blocks: list[Any], calls: set[str]) -> str | None:
    """The calls of the assistant message before must be answered first thing, one result each."""
    lead = [b.get("tool_use_id") for b in blocks[:len(calls)] if b.get("type") == "tool_result"]
    if calls and (len(lead) != len(calls) or set(lead) != calls):
        return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(calls))}")
    return None


def _blocks_problem(i: int, role: Any, blocks: list[Any], calls: set[str]) -> str | None:
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and not (isinstance(block.get("text"), str) and block["text"].strip()):
            return f"{where}: text content blocks must be non-empty"
        if kind == "thinking":
            if not block.get("signature"):
                return f"{where}.signature: Field required"
            if block["signature"] != sign(str(block.get("thinking"))):
                return f"{where}: Invalid `signature` in `thinking` block"
        if kind == "tool_use" and not isinstance(block.get("input"), dict):
            return f"{where}.input: Input should be a valid dictionary"
        if kind == "tool_result" and (role != "user" or block.get("tool_use_id") not in calls):
            return f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}"
        if kind is None:
            return f"{where}: content blocks must be objects with a type"
    return None


def _thinking_turn_problem(request: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """With thinking on, the assistant turn a tool result answers must start with its thinking block."""
    thinking = request.get("thinking")
    if not (isinstance(thinking, dict) and thinking.get("type") == "enabled") or len(messages) < 2:
        return None
    last, before = messages[-1], messages[-2]
    results = isinstance(last.get("content"), list) and any(
        b.get("type") == "tool_result" for b in last["content"])
    if results and isinstance(before.get("content"), list) and before["content"] and \
            before["content"][0].get("type") not in ("thinking", "redacted_thinking"):
        return (f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{before['content'][0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                "start with a thinking block.")
    return None


def _cache_problem(request: dict[str, Any]) -> str | None:
    if sum(1 for unit, marked in _units(request) if marked) > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided."
    return None


def _units(request: dict[str, Any]) -> list[tuple[str, bool]]:
    """The prompt, block by block in cache order (tools, system, messages), each with whether it is a breakpoint."""
    units: list[tuple[str, bool]] = []
    for tool in request.get("tools") or []:
        units.append(_unit("tool", tool))
    system = request.get("system")
    for block in system if isinstance(system, list) else ([{"type": "text", "text": system}] if system else []):
        units.append(_unit("system", block))
    for message in request.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else [{"type": "text", "text": content}]:
            units.append(_unit(str(message.get("role")), block))
    return units


def _unit(where: str, block: Any) -> tuple[str, bool]:
    marked = isinstance(block, dict) and "cache_control" in block
    plain = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
    return f"{where}:{json.dumps(plain, sort_keys=True, ensure_ascii=False)}", marked


class PromptCache:
    """Prefixes written at breakpoints, and what a request reads and writes (the usage's cache fields)."""

    def __init__(self) -> None:
        self.written: set[str] = set()

    def account(self, request: dict[str, Any]) -> dict[str, int]:
        units = _units(request)
        sizes = [len(text.encode()) // 4 or 1 for text, _ in units]
        digest, prefixes = hashlib.sha256(), []
        for n, (text, marked) in enumerate(units):
            digest.update(text.encode())
            if marked:
                prefixes.append((n + 1, digest.copy().hexdigest()))
        read = max((end for end, key in prefixes if key in self.written), default=0)
        last = prefixes[-1][0] if prefixes else 0
        self.written |= {key for _, key in prefixes}
        total, cached = sum(sizes), sum(sizes[:read])
        created = sum(sizes[read:last]) if last > read else 0
        return {"input_tokens": total - cached - created, "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": created}


def events(step: Step, request: dict[str, Any], usage: dict[str, int]) -> list[dict[str, Any]]:
    """The Messages stream events a step plays: its ``anthropic`` events as given, else its chunks as blocks."""
    model = str(request.get("model", "mock-model"))
    start = {"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
                                                  "model": model, "content": [], "stop_reason": None,
                                                  "usage": {**usage, "output_tokens": 1}}}
    if "anthropic" in step:
        return [start, *step["anthropic"]]
    blocks: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = [start]
    tools: dict[int, int] = {}  # the step's tool index -> block index
    reason, output = "end_turn", 0
    for chunk in step.get("chunks", []):
        output += len(json.dumps(chunk)) // 4
        if "finish" in chunk:
            reason = STOP.get(chunk["finish"], "end_turn")
        for piece in _pieces(chunk, blocks, tools):
            if piece["type"] == "content_block_start" and piece["index"]:
                out += _stop(blocks, piece["index"] - 1)  # one block at a time, as Anthropic streams
            out.append(piece)
    out += _stop(blocks, len(blocks) - 1) if blocks else []
    out.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": max(output, 1)}})
    out.append({"type": "message_stop"})
    return out


def _stop(blocks: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The events that end block ``index``: a thinking block's signature first."""
    signature = [{"type": "content_block_delta", "index": index,
                  "delta": {"type": "signature_delta", "signature": sign(blocks[index]["thinking"])}}] \
        if blocks[index]["type"] == "thinking" else []
    return [*signature, {"type": "content_block_stop", "index": index}]


def _pieces(chunk: dict[str, Any], blocks: list[dict[str, Any]], tools: dict[int, int]) -> list[dict[str, Any]]:
    """The events one Chat-shaped chunk of a step becomes (starting the block it needs)."""
    if chunk.get("text"):
        return _open(blocks, "text", {"text": ""}) + [
            {"type": "content_block_delta", "index": len(blocks) - 1,
             "delta": {"type": "text_delta", "text": chunk["text"]}}]
    if chunk.get("reasoning"):
        started = _open(blocks, "thinking", {"thinking": "", "signature": ""})
        blocks[-1]["thinking"] += chunk["reasoning"]
        return started + [{"type": "content_block_delta", "index": len(blocks) - 1,
                          "delta": {"type": "thinking_delta", "thinking": chunk["reasoning"]}}]
    tool = chunk.get("tool")
    if isinstance(tool, dict):
        opened: list[dict[str, Any]] = []
        if tool.get("index") not in tools:
            blocks.append({"type": "tool_use", "id": tool.get("id") or f"toolu_{len(blocks)}", "name": tool["name"],
                           "input": {}})
            tools[tool.get("index", 0)] = len(blocks) - 1
            opened = [{"type": "content_block_start", "index": len(blocks) - 1, "content_block": dict(blocks[-1])}]
        if tool.get("arguments"):
            opened.append({"type": "content_block_delta", "index": tools[tool.get("index", 0)],
                           "delta": {"type": "input_json_delta", "partial_json": tool["arguments"]}})
        return opened
    return []


def _open(blocks: list[dict[str, Any]], kind: str, empty: dict[str, Any]) -> list[dict[str, Any]]:
    """Start a block of ``kind`` unless the last one is of that kind (text and thinking continue)."""
    if blocks and blocks[-1]["type"] == kind:
        return []
    blocks.append({"type": kind, **empty})
    return [{"type": "content_block_start", "index": len(blocks) - 1, "content_block": {"type": kind, **empty}}]


def message(stream_events: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole message a stream of events adds up to (a request without ``stream``)."""
    body: dict[str, Any] = dict(stream_events[0]["message"])
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for event in stream_events[1:]:
        kind, index = event["type"], int(event.get("index", -1))
        if kind == "content_block_start":
            blocks[index] = dict(event["content_block"])
        elif kind == "content_block_delta":
            delta = event["delta"]
            field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}.get(
                delta["type"])
            if field:
                blocks[index][field] = blocks[index].get(field, "") + delta[field]
            elif delta["type"] == "input_json_delta":
                partial[index] = partial.get(index, "") + delta["partial_json"]
        elif kind == "message_delta":
            body["stop_reason"] = event["delta"]["stop_reason"]
            body["usage"] = {**body["usage"], **event["usage"]}
        elif kind == "error":
            return error_body(event["error"]["type"], event["error"]["message"])
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    body["content"] = [blocks[i] for i in sorted(blocks)]
    return body


def sse(stream_events: list[dict[str, Any]]) -> list[str]:
    return [f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n" for e in stream_events]
