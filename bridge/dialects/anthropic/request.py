"""A Responses request said as an Anthropic Messages request.

The tools, their names and the map that restores them are the Chat bridge's (custom tools as
one-string functions, namespaces flattened); the history is the Chat bridge's order made into
Messages (``messages.py``). What only Messages has is decided here: ``max_tokens``, which it
requires, extended thinking for ``reasoning.effort``, ``tool_choice`` and parallel calls,
structured output, ``metadata.user_id``, and the prompt cache's breakpoints.
"""
from __future__ import annotations

from typing import Any

from bridge.dialects.anthropic import thinking
from bridge.dialects.anthropic.messages import MessagesHistory, system_blocks, to_messages
from bridge.dialects.base import UpstreamOptions, UpstreamRequest
from bridge.dialects.chat.request import required
from bridge.dialects.chat.tools import ToolNamer, chat_tools, tool_choice
from bridge.errors import InvalidRequestError
from bridge.values import is_int, is_number, str_of

# Output limits of Claude models by name prefix, longest first (Anthropic's model overview, 2026):
# the max_tokens sent when neither the client nor the upstream's setting gives one.
OUTPUT_LIMITS = (("claude-3-5-haiku", 8192), ("claude-3-haiku", 4096), ("claude-3-opus", 4096),
                 ("claude-opus-4-0", 32000), ("claude-opus-4-1", 32000), ("claude-opus-4-2", 32000),
                 ("claude-opus-4", 64000), ("claude-sonnet-4", 64000), ("claude-haiku-4", 64000),
                 ("claude-3-7-sonnet", 64000))
# An Anthropic-compatible model of unknown limit: enough for a long answer, within what the
# compatible servers we know accept. Set the upstream's max output tokens to change it.
DEFAULT_MAX_TOKENS = 16384
# Extended thinking's budget per reasoning effort (tokens; Messages' minimum is 1024). "none"
# and "minimal" think not at all.
THINKING_BUDGETS = {"low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}
MIN_BUDGET = 1024
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
JSON_OBJECT = "Answer with one JSON object and nothing else."
CACHE = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the Messages request for a Responses request (always streamed: the IO side reads the stream)."""
    model, items, declared = required(body)
    namer = ToolNamer()
    tools = [messages_tool(tool) for raw in declared if isinstance(raw, dict) for tool in chat_tools(raw, namer)]
    history = MessagesHistory(options, namer)
    history.system += [str_of(body, "instructions")] if str_of(body, "instructions") else []
    _check_thinking(items)
    chat = history.build(items)
    out: dict[str, Any] = {"model": options.model or model, "max_tokens": max_tokens(body, options, model)}
    system = system_blocks(message["content"] for message in chat if message["role"] == "system")
    system += [{"type": "text", "text": JSON_OBJECT}] if _wants_json_object(body) else []
    out |= {"system": system} if system else {}
    out["messages"] = to_messages(chat)
    out |= {"tools": tools} if tools else {}
    unsent: set[str] = set()
    out |= _reasoning_and_tools(body, options, out["max_tokens"], _tool_choice(body, namer) if tools else None,
                                unsent)
    headers = _output(body, out)
    if options.prompt_caching:
        mark_cache(out)
    out["stream"] = True
    notes = (f"{history.foreign_reasoning} reasoning item(s) made by another server left out: an Anthropic "
             "upstream cannot read them",) if history.foreign_reasoning else ()
    return UpstreamRequest(body=out, tools=namer.tools, unsent=frozenset(unsent), headers=headers, notes=notes)


def _check_thinking(items: list[dict[str, Any]]) -> None:
    """Refuse a thinking block of ours that no longer reads whole (altered on its way through the client)."""
    for i, item in enumerate(items):
        content = item.get("encrypted_content")
        if item.get("type") == "reasoning" and isinstance(content, str) and thinking.is_thinking(content) \
                and thinking.unseal(content) is None:
            raise InvalidRequestError(f"input[{i}] is a Claude thinking block that was altered: send it back as "
                                      "it was given.", param=f"input[{i}].encrypted_content",
                                      code="invalid_encrypted_content")


def _reasoning_and_tools(body: dict[str, Any], options: UpstreamOptions, cap: int, choice: dict[str, Any] | None,
                         unsent: set[str]) -> dict[str, Any]:
    """Thinking, tool_choice and sampling: Messages thinks only at its own temperature and top_p."""
    fields = _thinking(body, options, cap, choice, unsent)
    fields |= {"tool_choice": choice} if choice is not None else {}
    sampling = [key for key in ("temperature", "top_p") if is_number(body.get(key))]
    if "thinking" in fields:
        unsent |= set(sampling)
        return fields
    return fields | {key: body[key] for key in sampling}


def _output(body: dict[str, Any], out: dict[str, Any]) -> dict[str, str]:
    """Add the end user and a structured output's schema to ``out``; return the headers that need."""
    user = str_of(body, "safety_identifier") or str_of(body, "user")
    if user:
        out["metadata"] = {"user_id": user}
    schema = _schema(body)
    return structured_output(schema, out) if schema is not None else {}


def structured_output(schema: dict[str, Any], out: dict[str, Any]) -> dict[str, str]:
    """Ask ``out`` for an answer that follows ``schema``; return the beta header that needs."""
    out["output_format"] = {"type": "json_schema", "schema": schema}
    return {"anthropic-beta": STRUCTURED_OUTPUTS_BETA}


def max_tokens(body: dict[str, Any], options: UpstreamOptions, model: str) -> int:
    """The client's cap, else the upstream's setting, else the model's known limit, else DEFAULT_MAX_TOKENS."""
    if is_int(body.get("max_output_tokens")) and body["max_output_tokens"] > 0:
        return int(body["max_output_tokens"])
    if options.max_output_tokens:
        return options.max_output_tokens
    name = (options.model or model).lower()
    return next((limit for prefix, limit in OUTPUT_LIMITS if name.startswith(prefix)), DEFAULT_MAX_TOKENS)


def messages_tool(chat_tool: dict[str, Any]) -> dict[str, Any]:
    """A Chat function tool as a Messages tool: its parameters as ``input_schema`` (an empty object if none)."""
    function = chat_tool.get("function") or {}
    parameters = function.get("parameters")
    tool = {"name": function.get("name"),
            "input_schema": parameters if isinstance(parameters, dict) and parameters else {"type": "object",
                                                                                            "properties": {}}}
    return tool | ({"description": function["description"]} if function.get("description") else {})


def _tool_choice(body: dict[str, Any], namer: ToolNamer) -> dict[str, Any] | None:
    """Messages' tool_choice for the tools as the Chat bridge names them."""
    return messages_tool_choice(tool_choice(body.get("tool_choice"), namer), body.get("parallel_tool_calls"))


def messages_tool_choice(chosen: Any, parallel: Any) -> dict[str, Any] | None:
    """Messages' tool_choice for a Chat one (required is ``any``), ``disable_parallel_tool_use`` for parallel off."""
    if isinstance(chosen, dict) and isinstance(chosen.get("function"), dict):
        choice: dict[str, Any] = {"type": "tool", "name": chosen["function"].get("name")}
    elif chosen in ("none", "required"):
        choice = {"type": "none" if chosen == "none" else "any"}
    else:
        choice = {"type": "auto"}
    if parallel is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice if chosen is not None or "disable_parallel_tool_use" in choice else None


def _thinking(body: dict[str, Any], options: UpstreamOptions, cap: int, choice: dict[str, Any] | None,
              unsent: set[str]) -> dict[str, Any]:
    """Extended thinking for ``reasoning.effort``, where the upstream takes it and the request allows it.

    Messages thinks only with ``tool_choice`` auto or none and a budget below ``max_tokens``;
    otherwise the effort is not sent, and the Response says so (``unsent``).
    """
    effort = str_of(body["reasoning"], "effort") if isinstance(body.get("reasoning"), dict) else ""
    if effort not in THINKING_BUDGETS:
        if effort and effort not in ("none", "minimal"):
            unsent.add("reasoning.effort")
        return {}
    fields = thinking_for(effort, cap, choice) if options.send_reasoning_effort else {}
    if not fields:
        unsent.add("reasoning.effort")
    return fields


def thinking_for(effort: str, cap: int, choice: dict[str, Any] | None) -> dict[str, Any]:
    """The ``thinking`` field for ``effort`` under ``max_tokens`` ``cap``, or {} where Messages cannot think.

    Its budget is the effort's, at most half the cap; under Messages' minimum of 1,024, or
    with a tool forced (``any``, ``tool``), there is none.
    """
    budget = min(THINKING_BUDGETS.get(effort, 0), cap // 2)
    forced = choice is not None and choice["type"] in ("any", "tool")
    return {} if forced or budget < MIN_BUDGET else {"thinking": {"type": "enabled", "budget_tokens": budget}}


def _wants_json_object(body: dict[str, Any]) -> bool:
    fmt = body["text"].get("format") if isinstance(body.get("text"), dict) else None
    return isinstance(fmt, dict) and fmt.get("type") == "json_object"


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body["text"].get("format") if isinstance(body.get("text"), dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    return schema if isinstance(schema, dict) else None


def mark_cache(request: dict[str, Any]) -> None:
    """Put the prompt cache's breakpoints on the stable prefix, at most MAX_BREAKPOINTS.

    The tools, the system text, the end of the conversation (written for the next turn) and
    the end of the user message before it (where the previous turn's request ended, so this
    one reads it): each turn of an agent's session reads the last one's prefix from the cache
    however many blocks it added.
    """
    marks: list[dict[str, Any]] = []
    if request.get("tools"):
        marks.append(request["tools"][-1])
    if request.get("system"):
        marks.append(request["system"][-1])
    messages = request["messages"]
    users = [i for i, message in enumerate(messages) if message["role"] == "user"]
    for index in ([len(messages) - 1] + [i for i in users[-2:-1] if i != len(messages) - 1])[:2]:
        block = _cacheable(messages[index]["content"])
        if block is not None:
            marks.append(block)
    for block in marks[-MAX_BREAKPOINTS:]:
        block["cache_control"] = dict(CACHE)


def _cacheable(content: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last block of a message that can carry a breakpoint (thinking blocks cannot)."""
    return next((block for block in reversed(content) if block.get("type") not in ("thinking", "redacted_thinking")),
                None)
