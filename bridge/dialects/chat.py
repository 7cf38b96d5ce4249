"""The Chat Completions dialect: a Responses request said as a Chat request, and Chat chunks read back as events.

Two halves of one protocol (docs/responses-bridge.md §1, §4): ``to_request`` translates the
request (its tool map lets ``stream.py`` turn the upstream's function calls back into the
tool kinds the client declared: namespaced, custom, local_shell); ``read_chunk`` and
``read_completion`` read the answer into UpstreamEvents.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest
from bridge.errors import InvalidRequestError
from bridge.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolMap,
    ToolTarget,
    UpstreamEvent,
    UpstreamFailed,
    UsageReported,
)
from bridge.stream import wants_logprobs
from bridge.values import as_int, is_int, is_number, str_of

# -- the request: Responses -> Chat ------------------------------------------------------
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
# Sampling settings Chat has under the same names; the Response object echoes them (bridge/stream.py).
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


# What the bridge does with every field of a Responses request (issue 11: nothing silently
# ignored). A field on none of these lists is refused, as the OpenAI API refuses it.
TRANSLATED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                        "temperature", "top_p", "presence_penalty", "frequency_penalty", "max_output_tokens", "user",
                        "text", "reasoning", "stream", "top_logprobs"})
# Kept by the gateway itself (api/stored/), or echoed: never the upstream's business.
KEPT_BY_GATEWAY = frozenset({"store", "previous_response_id", "conversation", "metadata", "stream_options",
                             "background", "prompt"})
# No effect on a Chat upstream, by nature (README, "What the bridge does with each field").
NO_EFFECT = frozenset({
    # Asks for extras: the text's log probabilities are asked of the upstream (wants_logprobs); the
    # others (encrypted reasoning, search sources...) a Chat answer does not have.
    "include",
    "prompt_cache_key", "prompt_cache_retention",  # OpenAI's prompt-cache routing hints
    "safety_identifier", "service_tier",  # OpenAI's abuse monitoring and processing tiers
    "truncation",  # the bridge never drops items: "disabled", whatever was asked
    "client_metadata",  # Codex's own metadata for its provider
})
# Asked for, but the bridge cannot do it yet: refused rather than answered without it.
NOT_BRIDGED = {
    "max_tool_calls": "A cap on tool calls cannot be enforced on a Chat upstream.",
}
# Content parts a Chat message cannot carry (images by URL can, in user messages).
UNSENDABLE_PARTS = {"input_file": "files", "input_audio": "audio"}


def check(body: dict[str, Any]) -> None:
    """Refuse, with a 400 naming it, what a Responses request asks that the bridge cannot honour."""
    for name in body:
        if name not in TRANSLATED | KEPT_BY_GATEWAY | NO_EFFECT | NOT_BRIDGED.keys():
            raise InvalidRequestError(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
    for name, why in NOT_BRIDGED.items():
        if body.get(name) not in (None, 0):
            raise InvalidRequestError(f"{why} Send the request without '{name}'.", param=name,
                                      code="unsupported_parameter")
    items = body.get("input")
    for i, item in enumerate(items if isinstance(items, list) else []):
        content = item.get("content") if isinstance(item, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            unsendable = UNSENDABLE_PARTS.get(str(kind)) or (
                "images by file id" if kind == "input_image" and not str_of(part, "image_url") else None)
            if unsendable:
                raise InvalidRequestError(f"A Chat Completions upstream cannot receive {unsendable} in a message.",
                                          param=f"input[{i}].content[{j}]", code="unsupported_content")


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
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
    history.system += [str_of(body, "instructions")] if str_of(body, "instructions") else []
    chat: dict[str, Any] = {"model": options.model or model, "messages": history.build(raw_input)}
    if chat_tools:
        chat["tools"] = chat_tools
        choice = _tool_choice(body.get("tool_choice"), namer)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    chat |= {key: body[key] for key in SAMPLING if is_number(body.get(key))}
    chat |= {"user": body["user"]} if isinstance(body.get("user"), str) else {}
    if is_int(body.get("max_output_tokens")):
        chat[options.max_tokens_field] = body["max_output_tokens"]
    # The `reasoning` object itself is never forwarded: Chat servers reject it (§5).
    effort = str_of(body["reasoning"], "effort") if isinstance(body.get("reasoning"), dict) else ""
    if options.send_reasoning_effort and effort:
        chat["reasoning_effort"] = effort
    unsent = frozenset({"reasoning.effort"} if effort and "reasoning_effort" not in chat else ())
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if wants_logprobs(body):
        chat["logprobs"] = True
        if is_int(body.get("top_logprobs")) and body["top_logprobs"] > 0:
            chat["top_logprobs"] = body["top_logprobs"]
    verbosity = str_of(body["text"], "verbosity") if isinstance(body.get("text"), dict) else ""
    if verbosity:
        chat["verbosity"] = verbosity  # Chat's name for text.verbosity
    chat["stream"] = True
    if options.send_stream_options:
        chat["stream_options"] = {"include_usage": True}
    return UpstreamRequest(body=chat, tools=namer.tools, unsent=unsent)


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
        if not str_of(spec, "name"):
            return []
        name = namer.add(ToolTarget("function", spec["name"], namespace))
        return [_function(name, str_of(spec, "description"), spec.get("parameters"), strict=spec.get("strict") is True)]
    if kind == "namespace" and str_of(raw, "name") and isinstance(raw.get("tools"), list):
        subtools = [sub for sub in raw["tools"] if isinstance(sub, dict) and sub.get("type") in ("function", "custom")]
        return [tool for sub in subtools for tool in _tool(sub, namer, raw["name"])]
    if kind == "custom" and str_of(raw, "name"):
        name = namer.add(ToolTarget("custom", raw["name"], namespace))
        return [_function(name, _custom_description(raw), CUSTOM_PARAMETERS)]
    if kind == "local_shell":
        name = namer.add(ToolTarget("local_shell", "local_shell"))
        return [_function(name, "Run a shell command on the user's machine and return its output.", SHELL_PARAMETERS)]
    # Hosted tools (web_search, file_search, mcp, ...) run at OpenAI; a Chat server has none.
    return []


def _function(name: str, description: str, parameters: Any, *, strict: bool = False) -> dict[str, Any]:
    # `strict: true` goes on when the client asked for it (openai-agents and pydantic-ai do):
    # servers that enforce schemas honour it, the rest ignore it. `false` is the default, unsaid.
    function: dict[str, Any] = {"name": name, "description": description} if description else {"name": name}
    function["parameters"] = parameters if isinstance(parameters, dict) and parameters else dict(DEFAULT_PARAMETERS)
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom_description(raw: dict[str, Any]) -> str:
    """Describe a freeform tool so a model that only knows JSON functions can call it."""
    parts = [str_of(raw, "description")] if str_of(raw, "description") else []
    parts.append("Pass the raw freeform text for this tool as the string `input`; it is not JSON.")
    fmt = raw.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and str_of(fmt, "definition"):
        parts.append(f"`input` must match this {str_of(fmt, 'syntax')} grammar:\n{fmt['definition']}")
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
    mode = choice.get("mode")
    if kind == "allowed_tools" and isinstance(mode, str) and mode in ("auto", "required"):
        # Chat has no "only these tools"; the mode is the closest it can say.
        return mode
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
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in TEXT_PARTS and str_of(part, "text"):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and str_of(part, "refusal"):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image" and images and str_of(part, "image_url"):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in IMAGE_DETAILS:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        # input_file, file_id images and audio have no portable Chat form: ``check`` refuses them.
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


# -- the answer: Chat chunks -> UpstreamEvents ------------------------------------------
#
# Strategy (as atop h11's readers): every upstream quirk is absorbed here, so the machine in
# stream.py only ever sees the small vocabulary of events.py. Nothing here raises on bad
# input: what cannot be read becomes an UpstreamFailed event, which fails the response.

PROTOCOL_ERROR = "upstream_protocol_error"


def read_chunk(chunk: Any) -> list[UpstreamEvent]:
    """Return the events in one parsed `chat.completion.chunk`.

    Only the first choice is read: the Responses API has no `n`, so other choices have
    nowhere to go.
    """
    if not isinstance(chunk, dict):
        return [_garbage(f"expected a JSON object as a stream chunk, got {type(chunk).__name__}")]
    if chunk.get("error"):
        return [_error_event(chunk["error"])]
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        return [_garbage("`choices` in a stream chunk is not a list")]
    events: list[UpstreamEvent] = []
    choice = choices[0] if choices else None
    if isinstance(choice, dict):
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            # A few servers put the whole message in a chunk's `message` instead of `delta`.
            delta = choice.get("message")
        if isinstance(delta, dict):
            events.extend(_parse_message(delta, _logprobs(choice.get("logprobs"))))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            events.append(Finished(reason=reason))
    # Usage rides on a trailing `choices: []` chunk (OpenAI, vLLM) or on the finish chunk
    # (llama.cpp); either way it is read after the choice.
    usage = read_usage(chunk.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


def read_completion(body: Any) -> list[UpstreamEvent]:
    """Return the events a non-streaming `chat.completion` would have streamed.

    Used when an upstream ignores `stream: true` and answers with one JSON body.
    """
    if not isinstance(body, dict):
        return [_garbage(f"expected a JSON object as a chat completion, got {type(body).__name__}")]
    if body.get("error"):
        return [_error_event(body["error"])]
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return [_garbage("chat completion has no `choices`")]
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = choice.get("delta")
    events: list[UpstreamEvent] = (_parse_message(message, _logprobs(choice.get("logprobs")))
                                   if isinstance(message, dict) else [])
    reason = choice.get("finish_reason")
    if not isinstance(reason, str) or not reason:
        # The body arrived whole, so nothing was cut off: a missing reason is not a break.
        has_calls = any(isinstance(event, ToolCallDelta) for event in events)
        reason = "tool_calls" if has_calls else "stop"
    events.append(Finished(reason=reason))
    usage = read_usage(body.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


def _parse_message(delta: dict[str, Any], logprobs: tuple[dict[str, Any], ...] = ()) -> list[UpstreamEvent]:
    """Return the reasoning, text and tool-call events of one delta (or whole message)."""
    events: list[UpstreamEvent] = []
    # DeepSeek, Qwen and llama.cpp say `reasoning_content`; newer vLLM and OpenRouter say
    # `reasoning`. Some send both with the same text, so only the first one counts.
    for key in ("reasoning_content", "reasoning"):
        reasoning = _text_of(delta.get(key))
        if reasoning:
            events.append(ReasoningDelta(text=reasoning))
            break
    text = _text_of(delta.get("content"))
    if text:
        events.append(TextDelta(text=text, logprobs=logprobs))
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        events.append(TextDelta(text=refusal))
    tool_calls = delta.get("tool_calls")
    if isinstance(tool_calls, list):
        for position, call in enumerate(tool_calls):
            event = _parse_tool_call(call, position)
            if event is not None:
                events.append(event)
    return events


def _parse_tool_call(call: Any, position: int) -> ToolCallDelta | None:
    """Return one tool-call fragment, or None when it carries nothing."""
    if not isinstance(call, dict):
        return None
    index = call.get("index")
    if not is_int(index):
        # Servers that send whole calls often omit `index`; the list position is the key.
        index = position
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    name = function.get("name") if isinstance(function.get("name"), str) and function.get("name") else None
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        pass
    elif arguments is None:
        arguments = ""
    else:
        # Some servers send the arguments as a JSON object; Responses wants a string.
        arguments = json.dumps(arguments, ensure_ascii=False)
    if call_id is None and name is None and not arguments:
        return None
    return ToolCallDelta(index=index, call_id=call_id, name=name, arguments=arguments)


def _logprobs(value: Any) -> tuple[dict[str, Any], ...]:
    """Return a choice's `logprobs.content` in the Responses shape; what is not well-formed is left out.

    Chat allows `bytes: null` (a token that is not whole UTF-8); Responses wants a list:
    the token's own UTF-8 then.
    """
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list):
        return ()
    return tuple(logprob for raw in content if (logprob := _logprob(raw, top=True)) is not None)


def _logprob(raw: Any, *, top: bool) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str) or not is_number(raw.get("logprob")):
        return None
    given = raw.get("bytes")
    data = given if isinstance(given, list) and all(is_int(b) for b in given) else list(raw["token"].encode())
    logprob: dict[str, Any] = {"token": raw["token"], "logprob": float(raw["logprob"]), "bytes": data}
    if top:
        alternatives = raw.get("top_logprobs")
        logprob["top_logprobs"] = [alt for item in (alternatives if isinstance(alternatives, list) else [])
                                   if (alt := _logprob(item, top=False)) is not None]
    return logprob


def read_usage(usage: Any) -> UsageReported | None:
    """Return the usage event for a Chat `usage` object, or None if there is none (the tap reads it too)."""
    if not isinstance(usage, dict):
        return None
    input_tokens = as_int(usage.get("prompt_tokens"))
    output_tokens = as_int(usage.get("completion_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    input_tokens = input_tokens or 0
    output_tokens = output_tokens or 0
    total = as_int(usage.get("total_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return UsageReported(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total if total is not None else input_tokens + output_tokens,
        cached_tokens=as_int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        reasoning_tokens=(
            as_int(completion_details.get("reasoning_tokens"))
            if isinstance(completion_details, dict)
            else None
        ),
    )


def _error_event(error: Any) -> UpstreamFailed:
    """Return the event for an upstream `{"error": ...}` payload, keeping its code and text."""
    if not isinstance(error, dict):
        return UpstreamFailed(code="upstream_error", message=str(error))
    # llama.cpp puts an HTTP status in `code` and the useful word in `type`.
    code = next((v for v in (error.get("code"), error.get("type")) if isinstance(v, str) and v), "upstream_error")
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = json.dumps(error, ensure_ascii=False)
    return UpstreamFailed(code=code, message=message)


def _garbage(message: str) -> UpstreamFailed:
    return UpstreamFailed(code=PROTOCOL_ERROR, message=message)


def _text_of(value: Any) -> str:
    """Return the text of a content value: a string, or a list of `{type: text}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


DIALECT = Dialect(name="chat", endpoint="chat/completions", wire="chat", to_request=to_request,
                  read_chunk=read_chunk, read_body=read_completion, check=check)
