"""A Responses request said as a Chat Completions request (docs/responses-bridge.md §1, §4)."""
from __future__ import annotations

from typing import Any

from bridge.dialects.base import UpstreamOptions, UpstreamRequest
from bridge.dialects.chat.messages import ChatHistory
from bridge.dialects.chat.tools import ToolNamer, chat_tools, tool_choice
from bridge.errors import InvalidRequestError
from bridge.response import wants_logprobs
from bridge.values import is_int, is_number, str_of

# Sampling settings Chat has under the same names; the Response object echoes them (bridge/response.py).
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
CACHE_HINTS = ("prompt_cache_key", "prompt_cache_retention")  # OpenAI's, under the same names in Chat


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the Chat Completions request for a Responses request.

    All system/developer text becomes one leading system message: strict chat templates
    reject two. Raises InvalidRequestError for a missing model, input or tools list.
    """
    model, items, declared = required(body)
    namer = ToolNamer()
    tools = [tool for raw in declared if isinstance(raw, dict) for tool in chat_tools(raw, namer)]
    history = ChatHistory(options, namer)
    history.system += [str_of(body, "instructions")] if str_of(body, "instructions") else []
    chat: dict[str, Any] = {"model": options.model or model, "messages": history.build(items)}
    if tools:
        chat |= _tool_fields(body, tools, namer)
    chat |= _sampling(body, options)
    extras, unsent = _switched(body, options)
    chat |= extras | _output(body)
    chat["stream"] = True
    if options.send_stream_options:
        chat["stream_options"] = {"include_usage": True}
    # Another server's sealed reasoning (OpenAI's, a Claude thinking block) has no Chat form: said on the row.
    notes = (f"the encrypted content of {history.opaque_reasoning} reasoning item(s) left out: a Chat upstream "
             "cannot read it",) if history.opaque_reasoning else ()
    return UpstreamRequest(body=chat, tools=namer.tools, unsent=unsent, notes=notes)


def _switched(body: dict[str, Any], options: UpstreamOptions) -> tuple[dict[str, Any], frozenset[str]]:
    """What is sent only to servers that take it (the upstream's switches), and what was asked but not sent.

    The `reasoning` object itself is never forwarded: Chat servers reject it (docs/responses-bridge.md
    §5); its effort goes as `reasoning_effort` where the upstream takes it. The cache hints go to a
    server that routes by them (OpenAI); every other server caches prefixes by itself.
    """
    extras: dict[str, Any] = {}
    effort = str_of(body["reasoning"], "effort") if isinstance(body.get("reasoning"), dict) else ""
    if options.send_reasoning_effort and effort:
        extras["reasoning_effort"] = effort
    if options.send_prompt_cache_key:
        extras |= {name: body[name] for name in CACHE_HINTS if isinstance(body.get(name), str)}
    return extras, frozenset({"reasoning.effort"} if effort and "reasoning_effort" not in extras else ())


def required(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[Any]]:
    """Return the model, the input items and the declared tools, or raise naming what is malformed."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("`model` must be a non-empty string.", param="model")
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list):
        raise InvalidRequestError("`input` must be a string or a list of items.", param="input")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"`input[{i}]` must be an object.", param=f"input[{i}]")
    declared = body.get("tools") if body.get("tools") is not None else []
    if not isinstance(declared, list):
        raise InvalidRequestError("`tools` must be a list.", param="tools")
    return model, items, declared


def _tool_fields(body: dict[str, Any], tools: list[dict[str, Any]], namer: ToolNamer) -> dict[str, Any]:
    fields: dict[str, Any] = {"tools": tools}
    choice = tool_choice(body.get("tool_choice"), namer)
    if choice is not None:
        fields["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        fields["parallel_tool_calls"] = body["parallel_tool_calls"]
    return fields


def _sampling(body: dict[str, Any], options: UpstreamOptions) -> dict[str, Any]:
    """The sampling settings, the end user and the token cap, under Chat's names (the cap's: the upstream's)."""
    fields = {key: body[key] for key in SAMPLING if is_number(body.get(key))}
    fields |= {"user": body["user"]} if isinstance(body.get("user"), str) else {}
    if is_int(body.get("max_output_tokens")):
        fields[options.max_tokens_field] = body["max_output_tokens"]
    return fields


def _output(body: dict[str, Any]) -> dict[str, Any]:
    """What the answer should be: its format, its tokens' log probabilities, its verbosity."""
    fields: dict[str, Any] = {}
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        fields["response_format"] = response_format
    if wants_logprobs(body):
        fields["logprobs"] = True
        if is_int(body.get("top_logprobs")) and body["top_logprobs"] > 0:
            fields["top_logprobs"] = body["top_logprobs"]
    verbosity = str_of(body["text"], "verbosity") if isinstance(body.get("text"), dict) else ""
    if verbosity:
        fields["verbosity"] = verbosity  # Chat's name for text.verbosity
    return fields


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
