"""The Response object of a bridged answer: what it says about the request, and the shapes of its output items.

Every field of Open Responses' ``ResponseResource`` is there, and it states what was used:
- a setting the upstream is sent, or that is the gateway's own (store, metadata...), echoes
  the request's value when it has the right type, else the default the OpenAI API documents;
- a setting the upstream was not sent carries the value in force instead of the one asked
  for: SETTINGS_IN_FORCE for those the bridge never passes on (a client asking for priority
  service learns it got the default), the dialect's ``unsent`` for those it left out this time
  (a reasoning effort the upstream is not configured to take is null).
The upstream's own default may differ from the documented one when the client sent none (a
llama.cpp or vLLM model's generation config can set its own temperature); the gateway cannot
know it, so the documented default is what it states.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.events import ToolTarget, UsageReported
from bridge.values import as_int, is_int, is_number

SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
SETTINGS_IN_FORCE: dict[str, Any] = {
    "service_tier": "default",  # no dialect passes a tier on: the upstream serves in its only one
    "max_tool_calls": None,  # no limit is enforced on the upstream's calls
}
TRUNCATION_MODES = ("auto", "disabled")
# The `include` entry that asks for the answer's log probabilities. As in the OpenAI API,
# `top_logprobs` alone only sets how many alternatives each token gets, and brings none back.
LOGPROBS = "message.output_text.logprobs"


def wants_logprobs(request: dict[str, Any]) -> bool:
    """Whether a Responses request asks for its answer's log probabilities."""
    include = request.get("include")
    return isinstance(include, list) and LOGPROBS in include


def settings_of(request: dict[str, Any], offered: set[ToolTarget], unsent: frozenset[str]) -> dict[str, Any]:
    """Return the fields of the Response object that state the request's settings, as they were used."""
    reasoning = request["reasoning"] if isinstance(request.get("reasoning"), dict) else {}
    reasoning = {key: value for key, value in reasoning.items() if f"reasoning.{key}" not in unsent}
    settings = {
        "previous_response_id": _str_or_none(request.get("previous_response_id")),
        "instructions": _str_or_none(request.get("instructions")),
        "tools": _offered_tools(request.get("tools"), offered),
        "tool_choice": request["tool_choice"] if request.get("tool_choice") is not None else "auto",
        "truncation": request["truncation"] if request.get("truncation") in TRUNCATION_MODES else "disabled",
        "parallel_tool_calls": _bool(request.get("parallel_tool_calls"), default=True),
        "text": _text(request.get("text")),
        **{key: request[key] if is_number(request.get(key)) and key not in unsent else default
           for key, default in SAMPLING_DEFAULTS.items()},
        "reasoning": {key: _str_or_none(reasoning.get(key)) for key in ("effort", "summary")},
        "max_output_tokens": request["max_output_tokens"] if is_int(request.get("max_output_tokens")) else None,
        # How many alternatives each token's log probability comes with (asked of the upstream
        # with the `include` entry; bridge/dialects/chat/).
        "top_logprobs": request["top_logprobs"] if is_int(request.get("top_logprobs")) else 0,
        # `store` defaults to true, as in the API: the gateway stores responses (api/stored/).
        "store": _bool(request.get("store"), default=True),
        # Answered by a task of the gateway, watched by polling or resuming (api/background/).
        "background": _bool(request.get("background"), default=False),
        "metadata": request["metadata"] if isinstance(request.get("metadata"), dict) else {},
        # Identifiers the client attached to the request; the gateway keeps them with the answer.
        "safety_identifier": _str_or_none(request.get("safety_identifier")),
        "prompt_cache_key": _str_or_none(request.get("prompt_cache_key")),
        "user": _str_or_none(request.get("user")),  # not in Open Responses; the OpenAI API still echoes it
        # The conversation it was answered in (an id, or {"id": ...} in the request): OpenAI's field.
        "conversation": _conversation(request.get("conversation")),
    }
    return {**settings, **SETTINGS_IN_FORCE}


def failed_response(response_id: str, model: str | None, code: str, message: str,
                    output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the Response object of a relayed stream that broke: only what the tap saw of it."""
    return {"id": response_id, "object": "response", "status": "failed", "model": model, "output": output or [],
            "error": {"code": code, "message": message}, "incomplete_details": None, "usage": None}


def usage_of(event: UsageReported) -> dict[str, Any]:
    """Return Responses usage; Codex needs every count as an integer, so unknown is 0."""
    return {
        "input_tokens": event.input_tokens,
        # cache_write_tokens: the openai SDK's InputTokensDetails requires it; Chat never reports it.
        "input_tokens_details": {"cached_tokens": event.cached_tokens or 0, "cache_write_tokens": 0},
        "output_tokens": event.output_tokens,
        "output_tokens_details": {"reasoning_tokens": event.reasoning_tokens or 0},
        "total_tokens": event.total_tokens,
    }


# -- the output items, in progress and done ------------------------------------------------


def output_text(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An output_text part; with ``logprobs`` (asked for) it carries its tokens' log probabilities."""
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = list(logprobs)
    return part


def message_item(item_id: str, status: str, text: str, logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
    content = [] if status == "in_progress" else [output_text(text, logprobs)]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def reasoning_item(item_id: str, status: str | None, text: str, encrypted_content: str | None = None) -> dict[str, Any]:
    """A reasoning item: as announced (no status, no text yet), or closed with its text as summary and content.

    ``encrypted_content``: what the upstream needs back next turn (a Claude thinking block), opaque to the client.
    """
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
    if status is None:
        return item
    if encrypted_content is not None:
        item["encrypted_content"] = encrypted_content
    if not text:  # redacted thinking: nothing to show
        return {**item, "status": status}
    item["summary"] = [{"type": "summary_text", "text": text}]
    return {**item, "content": [{"type": "reasoning_text", "text": text}], "status": status}


def function_item(item_id: str | None, call_id: str | None, name: str | None, namespace: str | None, arguments: str,
                  status: str) -> dict[str, Any]:
    """A function_call item. A namespaced tool comes back with its plain name and ``namespace`` set.

    Codex answers "unsupported call" otherwise (docs/responses-bridge.md §1).
    """
    item: dict[str, Any] = {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
                            "arguments": arguments}
    if namespace:
        item["namespace"] = namespace
    return {**item, "status": status}


def custom_call_item(item_id: str | None, call_id: str | None, target: ToolTarget, text: str, status: str
                     ) -> dict[str, Any]:
    """A custom_tool_call item (a freeform tool, such as Codex's apply_patch), with its raw ``input``."""
    item: dict[str, Any] = {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": target.name}
    if target.namespace:
        item["namespace"] = target.namespace
    return {**item, "input": text, "status": status}


def shell_call_item(item_id: str | None, call_id: str | None, action: dict[str, Any], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "local_shell_call", "call_id": call_id, "action": action, "status": status}


def read_responses_usage(usage: Any) -> UsageReported | None:
    """Return the usage event for a Responses ``usage`` object (a relayed answer's, or the bridge's own)."""
    if not isinstance(usage, dict):
        return None
    inp = usage.get("input_tokens_details")
    out = usage.get("output_tokens_details")
    input_tokens, output_tokens = as_int(usage.get("input_tokens")), as_int(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    total = as_int(usage.get("total_tokens"))
    return UsageReported(
        input_tokens=input_tokens or 0, output_tokens=output_tokens or 0,
        total_tokens=total if total is not None else (input_tokens or 0) + (output_tokens or 0),
        cached_tokens=as_int(inp.get("cached_tokens")) if isinstance(inp, dict) else None,
        reasoning_tokens=as_int(out.get("reasoning_tokens")) if isinstance(out, dict) else None)


def compaction_item(item_id: str, encrypted_content: str) -> dict[str, Any]:
    """A ``compaction`` output item: the conversation so far, opaque to the client, sent back in its place."""
    return {"id": item_id, "type": "compaction", "encrypted_content": encrypted_content}


def compacted_response(response_id: str, created_at: int, output: list[dict[str, Any]],
                       usage: UsageReported) -> dict[str, Any]:
    """``POST /v1/responses/compact``'s answer: the items to continue from (the last, a compaction item), and usage."""
    return {"id": response_id, "object": "response.compaction", "created_at": created_at, "output": output,
            "usage": usage_of(usage)}


def output_texts(response: dict[str, Any]) -> list[str]:
    """The text of each assistant message of a Response object's output, in order."""
    texts = []
    for item in response.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    return texts


def custom_input(arguments: str) -> str:
    """Return the freeform text of a custom tool call, read leniently: models wrap it every way.

    ``{"input": text}`` as asked; any one-key object of a string (``{"patch": text}``); a
    JSON string; or raw text that is not JSON at all. Anything else is passed on as it came.
    """
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, str):
        return parsed
    if not isinstance(parsed, dict):
        return arguments
    text = parsed.get("input")
    if isinstance(text, str):
        return text
    only = next(iter(parsed.values())) if len(parsed) == 1 else None
    return only if isinstance(only, str) else arguments


def shell_action(arguments: str) -> dict[str, Any] | None:
    """Return a local_shell `exec` action from the function arguments, or None if unreadable."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None
    command = parsed.get("command") if isinstance(parsed, dict) else None
    if isinstance(command, str) and command:
        command = ["bash", "-lc", command]  # models often send one shell string
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        return None
    action: dict[str, Any] = {"type": "exec", "command": command, "env": {}}
    workdir = parsed.get("workdir") or parsed.get("working_directory")
    if isinstance(workdir, str) and workdir:
        action["working_directory"] = workdir
    if is_int(parsed.get("timeout_ms")):
        action["timeout_ms"] = parsed["timeout_ms"]
    return action


# -- the settings' parts -------------------------------------------------------------------


def _conversation(value: Any) -> dict[str, str] | None:
    conversation_id = value.get("id") if isinstance(value, dict) else value
    return {"id": conversation_id} if isinstance(conversation_id, str) and conversation_id else None


def _offered_tools(declared: Any, offered: set[ToolTarget]) -> list[dict[str, Any]]:
    """Return the declared tools the upstream was offered, in their Responses form.

    A hosted tool (web_search, file_search, mcp...) runs at OpenAI; the dialect offers the
    upstream none, so the model did not have it and it is left out.
    """
    if not isinstance(declared, list):
        return []
    tools = [_offered_tool(tool, offered) for tool in declared if isinstance(tool, dict)]
    return [tool for tool in tools if tool is not None]


def _offered_tool(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None = None
                  ) -> dict[str, Any] | None:
    form = _OFFERED.get(str(tool.get("type")))
    return form(tool, offered, namespace) if form is not None else None


def _offered_function(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None) -> dict[str, Any] | None:
    spec = tool["function"] if isinstance(tool.get("function"), dict) else tool  # also declared the Chat way
    name = spec.get("name")
    if not isinstance(name, str) or ToolTarget("function", name, namespace) not in offered:
        return None
    parameters = spec.get("parameters")
    return {"type": "function", "name": name, "description": _str_or_none(spec.get("description")) or None,
            "parameters": parameters if isinstance(parameters, dict) else None,
            # As sent: the dialect passes `strict: true` on, and says nothing otherwise.
            "strict": spec.get("strict") is True}


def _offered_custom(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None) -> dict[str, Any] | None:
    name = tool.get("name")
    return tool if isinstance(name, str) and ToolTarget("custom", name, namespace) in offered else None


def _offered_shell(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None) -> dict[str, Any] | None:
    return tool if namespace is None and ToolTarget("local_shell", "local_shell") in offered else None


def _offered_namespace(tool: dict[str, Any], offered: set[ToolTarget], namespace: str | None
                       ) -> dict[str, Any] | None:
    name = tool.get("name")
    if namespace is not None or not isinstance(name, str) or not isinstance(tool.get("tools"), list):
        return None
    subtools = [_offered_tool(sub, offered, name) for sub in tool["tools"] if isinstance(sub, dict)]
    kept = [sub for sub in subtools if sub is not None]
    return {**tool, "tools": kept} if kept else None


_OFFERED: dict[str, Callable[[dict[str, Any], set[ToolTarget], str | None], dict[str, Any] | None]] = {
    "function": _offered_function, "custom": _offered_custom, "local_shell": _offered_shell,
    "namespace": _offered_namespace,
}


def _text(text: Any) -> dict[str, Any]:
    """Return the text settings: the output format asked for (plain text by default), and the verbosity sent."""
    verbosity = text.get("verbosity") if isinstance(text, dict) else None
    said = {"verbosity": verbosity} if isinstance(verbosity, str) and verbosity else {}
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        return {"format": {"type": "text"}, **said}
    if fmt["type"] == "json_schema":
        # Upstreams are not asked for strict adherence unless the client said so (the Chat default).
        fmt = {"description": None, **fmt, "strict": _bool(fmt.get("strict"), default=False)}
    return {"format": fmt, **said}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any, *, default: bool) -> bool:
    return value if isinstance(value, bool) else default


@dataclass(slots=True)
class OpenText:
    """A message or reasoning item being streamed (bridge/stream.py), and its item as it stands."""

    id: str
    output_index: int
    chunks: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None  # a message's tokens, when the client asked for them
    encrypted_content: str | None = None  # a reasoning item's, for the next turn (ReasoningSealed)

    def ref(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}

    def text(self) -> str:
        return "".join(self.chunks)

    def message_item(self, status: str) -> dict[str, Any]:
        return message_item(self.id, status, self.text(), self.logprobs)

    def reasoning_item(self, status: str | None) -> dict[str, Any]:
        return reasoning_item(self.id, status, self.text() if status is not None else "", self.encrypted_content)


@dataclass(slots=True)
class OpenCall:
    """One upstream tool call being streamed, keyed by its upstream index."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    target: ToolTarget | None = None
    id: str | None = None  # item id, once announced
    output_index: int | None = None

    def ref(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}

    def function_item(self, arguments: str, status: str) -> dict[str, Any]:
        target = self.target
        return function_item(self.id, self.call_id, target.name if target else self.name,
                             target.namespace if target else None, arguments, status)
