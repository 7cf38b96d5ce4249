"""The input items of a Responses request as Chat messages, in the order strict servers enforce.

One leading system message (several chat templates refuse a second one, or one later on);
an assistant message with ``tool_calls`` followed at once by one ``tool`` message per call;
no empty text parts (docs/responses-bridge.md §4).
"""
from __future__ import annotations

import json
from typing import Any

from bridge.dialects.base import UpstreamOptions
from bridge.dialects.chat.tools import ToolNamer
from bridge.events import ToolTarget
from bridge.values import str_of

NOT_EXECUTED = "Tool call was not executed."
CALL_TYPES = ("function_call", "custom_tool_call", "local_shell_call")
OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
TEXT_PARTS = ("input_text", "output_text", "text")
# Chat tool messages carry text only, so what cannot be sent is named rather than silently lost.
PLACEHOLDERS = {"input_image": "[image omitted: the upstream model cannot receive images in tool output]",
                "input_file": "[file omitted]"}
IMAGE_DETAILS = ("auto", "low", "high")


class ChatHistory:
    """Turn input items into Chat messages, keeping the order strict servers enforce.

    Calls in a row (and the assistant text just before them) become one assistant message,
    followed at once by one tool message per call, found by call_id wherever it sits.
    """

    def __init__(self, options: UpstreamOptions, namer: ToolNamer) -> None:
        self.options = options
        self.namer = namer
        self.system: list[str] = []
        self.chat: list[dict[str, Any]] = []
        self.outputs: dict[str, list[str]] = {}  # by call_id, in input order
        self.call_ids: set[str] = set()
        self.assistant: dict[str, Any] | None = None  # the message calls may still join
        self.reasoning: list[str] = []
        self.opaque_reasoning = 0  # reasoning items whose encrypted_content a Chat upstream cannot take
        self.started = False  # a user, assistant or tool item was seen

    def build(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the Chat messages for the input items, system message first."""
        for item in items:
            if _item_type(item) in CALL_TYPES and str_of(item, "call_id"):
                self.call_ids.add(item["call_id"])
            elif _item_type(item) in OUTPUT_TYPES and str_of(item, "call_id"):
                # A list, not one value: some servers reuse ids like "call_1" every turn, and
                # each of those calls must get its own output, in order.
                self.outputs.setdefault(item["call_id"], []).append(_output_text(item.get("output")))
        for item in items:
            self.add(item)
        self.close_calls()
        system = [{"role": "system", "content": "\n\n".join(self.system)}] if self.system else []
        return system + self.chat

    def add(self, item: dict[str, Any]) -> None:
        kind = _item_type(item)
        if kind == "message":
            self.add_message(item)
        elif kind in CALL_TYPES:
            self.add_call(item, kind)
        elif kind in OUTPUT_TYPES:
            self.add_output(item)
        elif kind == "reasoning":
            self.opaque_reasoning += bool(item.get("encrypted_content"))
            if self.options.replay_reasoning:
                self.close_calls()
                text = _reasoning_text(item)
                if text:
                    self.reasoning.append(text)
        # Anything else (web_search_call, compaction, item_reference, ...) has no Chat form.

    def add_message(self, item: dict[str, Any]) -> None:
        self.close_calls()
        role = item.get("role")
        content = _content(item.get("content"), images=role == "user")
        if role in ("system", "developer"):
            text = content if isinstance(content, str) else ""
            if text and role == "developer" and self.started and self.options.accepts_developer_role:
                self.chat.append({"role": "developer", "content": text})
            elif text:
                self.system.append(text)
            return
        self.started = True
        if role == "assistant":
            if content:
                self.assistant = self.append({"role": "assistant", "content": content})
            return
        self.reasoning = []  # reasoning followed by a user turn belonged to an abandoned answer
        if content:
            self.append({"role": "user", "content": content})

    def add_call(self, item: dict[str, Any], kind: str) -> None:
        self.started = True
        name, arguments = self.call_payload(item, kind)
        if self.assistant is None:
            self.assistant = self.append({"role": "assistant", "content": None})
        function = {"name": name, "arguments": arguments}
        self.assistant.setdefault("tool_calls", []).append({"id": str_of(item, "call_id"), "type": "function",
                                                           "function": function})

    def call_payload(self, item: dict[str, Any], kind: str) -> tuple[str, str]:
        """Return the Chat name and arguments string of a replayed call item."""
        if kind == "local_shell_call":
            action = item["action"] if isinstance(item.get("action"), dict) else {}
            arguments: dict[str, Any] = {"command": action.get("command") or []}
            if action.get("working_directory"):
                arguments["workdir"] = action["working_directory"]
            if action.get("timeout_ms") is not None:
                arguments["timeout_ms"] = action["timeout_ms"]
            return self.namer.name_for(ToolTarget("local_shell", "local_shell")), _json(arguments)
        name, namespace = str_of(item, "name"), str_of(item, "namespace") or None
        if kind == "custom_tool_call":
            return self.namer.name_for(ToolTarget("custom", name, namespace)), _json({"input": str_of(item, "input")})
        raw = item.get("arguments")
        arguments_text = raw if isinstance(raw, str) else _json(raw) if raw is not None else ""
        return self.namer.name_for(ToolTarget("function", name, namespace)), arguments_text or "{}"

    def add_output(self, item: dict[str, Any]) -> None:
        # An output ends the run of calls it answers, even though its tool message is
        # placed with its call (Codex can put a message between a call and its output).
        self.close_calls()
        self.started = True
        self.reasoning = []
        call_id = item.get("call_id")
        if isinstance(call_id, str) and call_id in self.call_ids:
            return
        # An output whose call is missing would be orphaned: strict servers reject a tool
        # message no assistant call announced, so its text is kept as a user message.
        text = _output_text(item.get("output"))
        if text:
            self.append({"role": "user", "content": text})

    def close_calls(self) -> None:
        """Put one tool message per call right after the assistant message that made them."""
        message, self.assistant = self.assistant, None
        for call in message.get("tool_calls", []) if message else []:
            # A call with no output anywhere (an interrupted turn) still needs an answer.
            outputs = self.outputs.get(call["id"])
            content = outputs.pop(0) if outputs else NOT_EXECUTED
            self.chat.append({"role": "tool", "tool_call_id": call["id"], "content": content})

    def append(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["role"] == "assistant" and self.reasoning:
            message["reasoning_content"] = "\n\n".join(self.reasoning)
            self.reasoning = []
        self.chat.append(message)
        return message


def _item_type(item: dict[str, Any]) -> Any:
    # Responses accepts role-only messages without `type`: {"role": "user", "content": "hi"}.
    return item.get("type") or ("message" if "role" in item else None)


def _content(content: Any, *, images: bool) -> str | list[dict[str, Any]]:
    """Return Chat content for Responses content: a string unless images must be kept."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [chat_part for part in content if isinstance(part, dict)
             if (chat_part := _part(part, images=images)) is not None]
    if any(part["type"] != "text" for part in parts):
        return parts
    # Text-only content is flattened: several chat templates accept only a string, and
    # vLLM joins text parts with a newline too.
    return "\n".join(part["text"] for part in parts)


def _part(part: dict[str, Any], *, images: bool) -> dict[str, Any] | None:
    """Return the Chat form of one content part, or None for one it has no form of (or an empty one).

    input_file, file_id images and audio have no portable Chat form: ``fields.check`` refuses them.
    """
    kind = part.get("type")
    if kind in TEXT_PARTS and str_of(part, "text"):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and str_of(part, "refusal"):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image" and images and str_of(part, "image_url"):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in IMAGE_DETAILS:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return None


def _output_text(output: Any) -> str:
    """Return a tool output as text: Chat tool messages cannot carry images."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [part for part in output if isinstance(part, dict)]
        texts = [str_of(part, "text") if part.get("type") in TEXT_PARTS else PLACEHOLDERS.get(str_of(part, "type"), "")
                 for part in parts]
        return "\n".join(text for text in texts if text)
    return "" if output is None else _json(output)


def _reasoning_text(item: dict[str, Any]) -> str:
    """Return a reasoning item's full text, else its summary (encrypted_content is opaque)."""
    for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key)
        if not isinstance(parts, list):  # a number here raised TypeError: a 500 (found by tests/bridge/test_fuzz.py)
            continue
        texts = [str_of(p, "text") for p in parts if isinstance(p, dict) and p.get("type") == part_type]
        if any(texts):
            return "\n".join(texts)
    return ""




def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
