"""A Chat Completions request said as Messages: a Chat client (the openai SDK, LangChain, the AI SDK) on Claude.

The messages are Chat already: system and developer text becomes ``system``, the rest goes
through the same shaping as the Responses bridge's (``messages.to_messages``: roles
alternating, tool results first in the next user message). The answer comes back through
the one pipeline (a ``ResponseStream``) and is said as Chat chunks by bridge/chat_stream.py.
Chat has no field for a thinking block's signature, so a Chat client's tool loop cannot send
Claude's thinking back: thinking is asked for only when no tool result is pending (Messages
would refuse the next request otherwise), and ``reasoning_content`` shows it.
"""
from __future__ import annotations

from typing import Any

from bridge.dialects.anthropic.messages import system_blocks, to_messages
from bridge.dialects.anthropic.request import (
    JSON_OBJECT,
    THINKING_BUDGETS,
    mark_cache,
    max_tokens,
    messages_tool,
    messages_tool_choice,
    structured_output,
    thinking_for,
)
from bridge.dialects.base import UpstreamOptions, UpstreamRequest
from bridge.errors import InvalidRequestError
from bridge.values import is_int, is_number, str_of

TRANSLATED = frozenset({"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                        "temperature", "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "user",
                        "safety_identifier", "response_format", "reasoning_effort"})
NO_EFFECT = frozenset({"metadata", "store", "service_tier", "prompt_cache_key", "prompt_cache_retention"})
# Asked of the model, but Messages has no way to say it: refused when it would change the answer.
UNSAID = {"n": 1, "logprobs": False, "top_logprobs": 0, "presence_penalty": 0, "frequency_penalty": 0, "seed": None,
          "logit_bias": None, "modalities": None, "audio": None, "prediction": None, "web_search_options": None}


def check(body: dict[str, Any]) -> None:
    """Refuse, with a 400 naming it, a Chat field Messages cannot honour."""
    for name, value in body.items():
        if name in TRANSLATED or name in NO_EFFECT:
            continue
        if name not in UNSAID:
            raise InvalidRequestError(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
        if value is not None and value != UNSAID[name] and not (name == "modalities" and value == ["text"]):
            raise InvalidRequestError(f"An Anthropic upstream cannot honour '{name}': send the request without it.",
                                      param=name, code="unsupported_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequestError("`messages` must be a non-empty list of objects.", param="messages")


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the Messages request for a Chat request (always streamed upstream)."""
    model = str(body["model"])
    messages = [_message(message) for message in body["messages"]]
    out: dict[str, Any] = {"model": options.model or model, "max_tokens": max_tokens({"max_output_tokens": _cap(body)},
                                                                                      options, model)}
    system = [str(m["content"]) for m in messages if m["role"] in ("system", "developer")]
    said_system = system_blocks(["\n\n".join(system)])
    out |= {"system": said_system} if said_system else {}
    out["messages"] = to_messages([message for message in messages if message["role"] not in ("system", "developer")])
    out |= _tools(body)
    out |= _thinking(body, options, out, out.get("tool_choice"))
    out |= _sampling(body, thinking="thinking" in out)
    headers = _format(body, out)
    if options.prompt_caching:
        mark_cache(out)
    out["stream"] = True
    return UpstreamRequest(body=out, headers=headers)


def _cap(body: dict[str, Any]) -> Any:
    return body["max_completion_tokens"] if is_int(body.get("max_completion_tokens")) else body.get("max_tokens")


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    declared: list[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
    tools = [messages_tool(tool) for tool in declared if isinstance(tool, dict) and tool.get("type") == "function"]
    if not tools:
        return {}
    choice = messages_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    return {"tools": tools} | ({"tool_choice": choice} if choice is not None else {})


def _sampling(body: dict[str, Any], *, thinking: bool) -> dict[str, Any]:
    """Temperature and top_p (not with thinking: Messages thinks at its own), stop sequences, the end user."""
    out = {key: body[key] for key in ("temperature", "top_p") if is_number(body.get(key)) and not thinking}
    stop = body.get("stop")
    out |= {"stop_sequences": [stop] if isinstance(stop, str) else stop} if stop else {}
    user = str_of(body, "safety_identifier") or str_of(body, "user")
    return out | ({"metadata": {"user_id": user}} if user else {})


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A Chat message as the Messages shaping reads it: text parts, images, calls, tool results."""
    content = message.get("content")
    if isinstance(content, list):
        parts = [part for part in content if isinstance(part, dict) and part.get("type") in ("text", "image_url")]
        content = parts if any(part["type"] == "image_url" for part in parts) else "\n".join(
            str_of(part, "text") for part in parts)
    said = {"role": message.get("role"), "content": content if content is not None else ""}
    if message.get("tool_calls"):
        said["tool_calls"] = message["tool_calls"]
    if message.get("role") == "tool":
        said["tool_call_id"] = message.get("tool_call_id")
    return said


def _thinking(body: dict[str, Any], options: UpstreamOptions, out: dict[str, Any],
              choice: dict[str, Any] | None) -> dict[str, Any]:
    pending = bool(out["messages"]) and any(block.get("type") == "tool_result"
                                            for block in out["messages"][-1]["content"])
    effort = str_of(body, "reasoning_effort")
    if effort not in THINKING_BUDGETS or not options.send_reasoning_effort or pending:
        return {}
    return thinking_for(effort, out["max_tokens"], choice)


def _format(body: dict[str, Any], out: dict[str, Any]) -> dict[str, str]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return {}
    if fmt.get("type") == "json_schema" and isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
        return structured_output(fmt["json_schema"]["schema"], out)
    if fmt.get("type") == "json_object":
        out.setdefault("system", []).append({"type": "text", "text": JSON_OBJECT})
    return {}
