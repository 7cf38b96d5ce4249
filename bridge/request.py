"""Translate a Responses request into a Chat Completions request (responses-bridge.md §1, §4).

The `ToolMap` it returns lets ``stream.py`` turn the upstream's function calls back into
the tool kinds the client declared (namespaced, custom, local_shell).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

from bridge.errors import InvalidRequestError

ToolKind: TypeAlias = Literal["function", "custom", "local_shell"]


class ToolTarget(NamedTuple):
    """What a Chat function name stands for on the Responses side."""

    kind: ToolKind
    name: str
    namespace: str | None = None


ToolMap: TypeAlias = dict[str, ToolTarget]

NAME_LIMIT = 64
INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
DEFAULT_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
NOT_EXECUTED = "Tool call was not executed."
CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The raw freeform text input."}},
    "required": ["input"],
}
SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments."},
        "workdir": {"type": "string", "description": "Working directory to run the command in."},
        "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds."},
    },
    "required": ["command"],
}
CALL_TYPES = ("function_call", "custom_tool_call", "local_shell_call")
OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
TOOL_CHOICE_WORDS = ("auto", "none", "required")
TEXT_PARTS = ("input_text", "output_text", "text")
# Chat tool messages carry text only, so what cannot be sent is named rather than silently lost.
PLACEHOLDERS = {"input_image": "[image omitted: the upstream model cannot receive images in tool output]",
                "input_file": "[file omitted]"}
IMAGE_DETAILS = ("auto", "low", "high")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamOptions:
    """What the upstream accepts; the defaults work on llama.cpp, vLLM, Ollama and DeepSeek."""

    model: str | None = None
    accepts_developer_role: bool = False
    replay_reasoning: bool = False
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    send_stream_options: bool = True
    send_reasoning_effort: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """The Chat request body, and the map that restores tool calls in the answer."""

    body: dict[str, Any]
    tools: ToolMap = field(default_factory=dict)


def to_chat_request(body: dict[str, Any], options: UpstreamOptions) -> ChatRequest:
    """Return the Chat Completions request for a Responses request.

    All system/developer text becomes one leading system message: strict chat templates
    reject two. Raises InvalidRequestError for a missing model, input or tools list.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("`model` must be a non-empty string.", param="model")
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        raw_input = [{"type": "message", "role": "user", "content": raw_input}]
    if not isinstance(raw_input, list):
        raise InvalidRequestError("`input` must be a string or a list of items.", param="input")
    for i, item in enumerate(raw_input):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"`input[{i}]` must be an object.", param=f"input[{i}]")
    raw_tools = body.get("tools") if body.get("tools") is not None else []
    if not isinstance(raw_tools, list):
        raise InvalidRequestError("`tools` must be a list.", param="tools")

    namer = _ToolNamer()
    chat_tools = [tool for raw in raw_tools if isinstance(raw, dict) for tool in _tool(raw, namer)]
    history = _History(options, namer)
    history.system += [_str(body, "instructions")] if _str(body, "instructions") else []
    chat: dict[str, Any] = {"model": options.model or model, "messages": history.build(raw_input)}
    if chat_tools:
        chat["tools"] = chat_tools
        choice = _tool_choice(body.get("tool_choice"), namer)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    chat |= {key: body[key] for key in ("temperature", "top_p") if _is_number(body.get(key))}
    chat |= {"user": body["user"]} if isinstance(body.get("user"), str) else {}
    if _is_number(body.get("max_output_tokens")) and isinstance(body["max_output_tokens"], int):
        chat[options.max_tokens_field] = body["max_output_tokens"]
    # The `reasoning` object itself is never forwarded: Chat servers reject it (§5).
    effort = _str(body["reasoning"], "effort") if isinstance(body.get("reasoning"), dict) else ""
    if options.send_reasoning_effort and effort:
        chat["reasoning_effort"] = effort
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    chat["stream"] = True
    if options.send_stream_options:
        chat["stream_options"] = {"include_usage": True}
    return ChatRequest(body=chat, tools=namer.tools)


class _ToolNamer:
    """Give every declared tool a valid, unique Chat function name, first come first served."""

    def __init__(self) -> None:
        self.tools: ToolMap = {}
        self.by_target: dict[ToolTarget, str] = {}

    def add(self, target: ToolTarget) -> str:
        if target in self.by_target:
            return self.by_target[target]
        base = _valid_name(_flat_name(target))
        name, n = base, 1
        while name in self.tools:
            # Deterministic: the n-th tool that lands on a taken name gets suffix _n.
            n += 1
            suffix = f"_{n}"
            name = base[: NAME_LIMIT - len(suffix)] + suffix
        self.tools[name] = target
        self.by_target[target] = name
        return name

    def name_for(self, target: ToolTarget) -> str:
        """Return the Chat name of a tool seen in history, declared or not."""
        return self.by_target.get(target) or _valid_name(_flat_name(target))


def _flat_name(target: ToolTarget) -> str:
    return f"{target.namespace}__{target.name}" if target.namespace else target.name


def _valid_name(raw: str) -> str:
    """Return `raw` made to match ^[a-zA-Z0-9_-]{1,64}$, keeping distinct long names distinct."""
    name = INVALID_NAME_CHARS.sub("_", raw) or "_"
    if len(name) > NAME_LIMIT:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: NAME_LIMIT - 9]}_{digest}"
    return name


def _tool(raw: dict[str, Any], namer: _ToolNamer, namespace: str | None = None) -> list[dict[str, Any]]:
    """Return the Chat function tools for one Responses (or Chat-shaped) tool; [] if hosted."""
    kind = raw.get("type")
    if kind == "function":
        spec = raw["function"] if isinstance(raw.get("function"), dict) else raw
        if not _str(spec, "name"):
            return []
        name = namer.add(ToolTarget("function", spec["name"], namespace))
        return [_function(name, _str(spec, "description"), spec.get("parameters"))]
    if kind == "namespace" and _str(raw, "name") and isinstance(raw.get("tools"), list):
        subtools = [sub for sub in raw["tools"] if isinstance(sub, dict) and sub.get("type") in ("function", "custom")]
        return [tool for sub in subtools for tool in _tool(sub, namer, raw["name"])]
    if kind == "custom" and _str(raw, "name"):
        name = namer.add(ToolTarget("custom", raw["name"], namespace))
        return [_function(name, _custom_description(raw), CUSTOM_PARAMETERS)]
    if kind == "local_shell":
        name = namer.add(ToolTarget("local_shell", "local_shell"))
        return [_function(name, "Run a shell command on the user's machine and return its output.", SHELL_PARAMETERS)]
    # Hosted tools (web_search, file_search, mcp, ...) run at OpenAI; a Chat server has none.
    return []


def _function(name: str, description: str, parameters: Any) -> dict[str, Any]:
    # `strict` is omitted: several servers reject it, and the others treat it as a hint.
    function: dict[str, Any] = {"name": name, "description": description} if description else {"name": name}
    function["parameters"] = parameters if isinstance(parameters, dict) and parameters else dict(DEFAULT_PARAMETERS)
    return {"type": "function", "function": function}


def _custom_description(raw: dict[str, Any]) -> str:
    """Describe a freeform tool so a model that only knows JSON functions can call it."""
    parts = [_str(raw, "description")] if _str(raw, "description") else []
    parts.append("Pass the raw freeform text for this tool as the string `input`; it is not JSON.")
    fmt = raw.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and _str(fmt, "definition"):
        parts.append(f"`input` must match this {_str(fmt, 'syntax')} grammar:\n{fmt['definition']}")
    return "\n\n".join(parts)


def _tool_choice(choice: Any, namer: _ToolNamer) -> str | dict[str, Any] | None:
    """Return the Chat `tool_choice` for a Responses one, or None to leave it out."""
    if choice is None:
        return None
    if isinstance(choice, str):
        return choice if choice in TOOL_CHOICE_WORDS else "auto"
    if not isinstance(choice, dict):
        return "auto"
    kind = choice.get("type")
    name = choice["function"].get("name") if isinstance(choice.get("function"), dict) else choice.get("name")
    target: ToolTarget | None = None
    if kind in ("function", "custom") and isinstance(name, str):
        target = ToolTarget(kind, name)
    elif kind == "local_shell":
        target = ToolTarget("local_shell", "local_shell")
    if target is not None and target in namer.by_target:
        return {"type": "function", "function": {"name": namer.by_target[target]}}
    if kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        # Chat has no "only these tools"; the mode is the closest it can say.
        return choice["mode"]
    # Hosted tools, MCP and names we do not know: let the model choose.
    return "auto"


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    return None


class _History:
    """Turn input items into Chat messages, keeping the order strict servers enforce.

    Calls in a row (and the assistant text just before them) become one assistant message,
    followed at once by one tool message per call, found by call_id wherever it sits.
    """

    def __init__(self, options: UpstreamOptions, namer: _ToolNamer) -> None:
        self.options = options
        self.namer = namer
        self.system: list[str] = []
        self.chat: list[dict[str, Any]] = []
        self.outputs: dict[str, list[str]] = {}  # by call_id, in input order
        self.call_ids: set[str] = set()
        self.assistant: dict[str, Any] | None = None  # the message calls may still join
        self.reasoning: list[str] = []
        self.started = False  # a user, assistant or tool item was seen

    def build(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the Chat messages for the input items, system message first."""
        for item in items:
            if _item_type(item) in CALL_TYPES and _str(item, "call_id"):
                self.call_ids.add(item["call_id"])
            elif _item_type(item) in OUTPUT_TYPES and _str(item, "call_id"):
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
        elif kind == "reasoning" and self.options.replay_reasoning:
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
        self.assistant.setdefault("tool_calls", []).append({"id": _str(item, "call_id"), "type": "function",
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
        name, namespace = _str(item, "name"), _str(item, "namespace") or None
        if kind == "custom_tool_call":
            return self.namer.name_for(ToolTarget("custom", name, namespace)), _json({"input": _str(item, "input")})
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
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in TEXT_PARTS and _str(part, "text"):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and _str(part, "refusal"):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and images and _str(part, "image_url"):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in IMAGE_DETAILS:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        # input_file, file_id images and audio have no portable Chat form; they are left out.
    if any(part["type"] != "text" for part in parts):
        return parts
    # Text-only content is flattened: several chat templates accept only a string, and
    # vLLM joins text parts with a newline too.
    return "\n".join(part["text"] for part in parts)


def _output_text(output: Any) -> str:
    """Return a tool output as text: Chat tool messages cannot carry images."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [part for part in output if isinstance(part, dict)]
        texts = [_str(part, "text") if part.get("type") in TEXT_PARTS else PLACEHOLDERS.get(_str(part, "type"), "")
                 for part in parts]
        return "\n".join(text for text in texts if text)
    return "" if output is None else _json(output)


def _reasoning_text(item: dict[str, Any]) -> str:
    """Return a reasoning item's full text, else its summary (encrypted_content is opaque)."""
    for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key)
        if not isinstance(parts, list):  # a number here raised TypeError: a 500 (found by tests/bridge/test_fuzz.py)
            continue
        texts = [_str(p, "text") for p in parts if isinstance(p, dict) and p.get("type") == part_type]
        if any(texts):
            return "\n".join(texts)
    return ""


def _str(obj: dict[str, Any], key: str) -> str:
    """Return obj[key] if it is a string, else "": most fields are optional and loosely typed."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
