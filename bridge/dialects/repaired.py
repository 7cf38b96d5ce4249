"""A Responses upstream that takes only some of Codex's tools and items: the request repaired, the answer read back.

vLLM, Ollama, LM Studio and llama.cpp serve ``/v1/responses`` but refuse ``custom``,
``namespace`` and hosted tools (vLLM: "tools.N.type: Input should be 'function'"), and some
refuse reasoning items that carry ``encrypted_content``. Relayed untouched, Codex's requests
fail there. For an upstream whose probe found so (``UpstreamOptions.accepts_*``), this
dialect rewrites what it does not take, as the Chat bridge does (bridge/dialects/chat/tools.py):
custom and local_shell tools become one-string functions, namespaces flattened names,
hosted tools are left out, reasoning items with encrypted content are left out of the
history; earlier calls and outputs in the history are rewritten the same way. The answer,
a Responses stream, is read into UpstreamEvents, and ResponseStream turns the functions
back into the tool kinds the client declared (the tool map), exactly as for the bridge.
"""
from __future__ import annotations

import json
from typing import Any

from bridge.dialects.anthropic.thinking import without_thinking
from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest
from bridge.dialects.chat.tools import ToolNamer, chat_tools, tool_choice
from bridge.errors import InvalidRequestError
from bridge.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolTarget,
    UpstreamEvent,
    UpstreamFailed,
)
from bridge.response import output_texts, read_responses_usage
from bridge.values import str_of

# Tools the client runs; any other type (web_search, file_search, mcp...) is hosted: the server's to run.
CLIENT_TOOLS = frozenset({"function", "custom", "namespace", "local_shell"})
REASONING_INCLUDE = "reasoning.encrypted_content"
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the request with what the upstream does not take rewritten, and the map that restores its calls."""
    namer = ToolNamer()
    declared = body.get("tools")
    tools = [tool for raw in declared if isinstance(raw, dict) for tool in _tools(raw, namer, options)] \
        if isinstance(declared, list) else []
    items = body.get("input")
    notes: tuple[str, ...] = ()
    if isinstance(items, list):
        items, notes = without_thinking(items)
        items = [repaired for item in items if (repaired := _item(item, namer, options)) is not None]
    out: dict[str, Any] = {**body, "model": options.model or body.get("model"), "input": items, "stream": True}
    out.pop("tools", None)
    out.pop("tool_choice", None)
    if tools:
        out["tools"] = tools
        choice = tool_choice(body.get("tool_choice"), namer)
        if choice is not None:
            out["tool_choice"] = _flat_choice(choice)
    if not options.accepts_encrypted_reasoning and isinstance(body.get("include"), list):
        out["include"] = [entry for entry in body["include"] if entry != REASONING_INCLUDE]
    return UpstreamRequest(body=out, tools=namer.tools, notes=notes)


def _tools(raw: dict[str, Any], namer: ToolNamer, options: UpstreamOptions) -> list[dict[str, Any]]:
    """The tools one declared tool becomes: itself where the upstream takes it, functions or nothing where not."""
    kept = _kept(raw, namer, options)
    return kept if kept is not None else [_flat_function(tool) for tool in chat_tools(raw, namer)]


def _kept(raw: dict[str, Any], namer: ToolNamer, options: UpstreamOptions) -> list[dict[str, Any]] | None:
    """The tool as declared where the upstream takes it (calls mapped); [] for hosted it refuses; None: rewrite."""
    kind = raw.get("type")
    if kind not in CLIENT_TOOLS:  # hosted: run by the server, or by nobody
        return [raw] if options.accepts_hosted_tools else []
    name = str_of(raw, "name")
    if kind == "function" and name:
        namer.add(ToolTarget("function", name))
        return [raw]
    if kind == "custom" and options.accepts_custom_tools and name:
        namer.add(ToolTarget("custom", name))
        return [raw]
    if kind == "namespace" and options.accepts_namespace_tools and name:
        _map_namespace(raw, name, namer)
        return [raw]
    return None


def _map_namespace(raw: dict[str, Any], namespace: str, namer: ToolNamer) -> None:
    for sub in raw.get("tools") or []:
        if isinstance(sub, dict) and str_of(sub, "name"):
            namer.add(ToolTarget("custom" if sub.get("type") == "custom" else "function", sub["name"], namespace))


def _item(item: Any, namer: ToolNamer, options: UpstreamOptions) -> Any:
    """One history item as the upstream takes it (None: left out)."""
    if not isinstance(item, dict):
        return item
    kind = item.get("type")
    if kind == "reasoning" and not options.accepts_encrypted_reasoning and item.get("encrypted_content"):
        return None
    if kind in ("custom_tool_call", "local_shell_call") and not options.accepts_custom_tools:
        return _as_function_call(item, namer)
    if kind in ("custom_tool_call_output", "local_shell_call_output") and not options.accepts_custom_tools:
        return {"type": "function_call_output", "call_id": item.get("call_id"), "output": item.get("output", "")}
    if kind == "function_call" and str_of(item, "namespace") and not options.accepts_namespace_tools:
        flat = namer.name_for(ToolTarget("function", str_of(item, "name"), item["namespace"]))
        return {key: value for key, value in item.items() if key != "namespace"} | {"name": flat}
    return item


def _as_function_call(item: dict[str, Any], namer: ToolNamer) -> dict[str, Any]:
    if item.get("type") == "local_shell_call":
        action = item.get("action")
        said = action if isinstance(action, dict) else {}
        name = namer.name_for(ToolTarget("local_shell", "local_shell"))
        arguments = json.dumps({"command": said.get("command"), "workdir": said.get("working_directory")})
    else:
        namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        name = namer.name_for(ToolTarget("custom", str_of(item, "name"), namespace))
        arguments = json.dumps({"input": str_of(item, "input")})
    called = {"type": "function_call", "call_id": item.get("call_id"), "name": name, "arguments": arguments}
    return called | ({"id": item["id"]} if isinstance(item.get("id"), str) else {})


def _flat_function(tool: dict[str, Any]) -> dict[str, Any]:
    """A Chat function tool as a Responses one: the same fields, one level up."""
    return {"type": "function", **tool["function"]}


def _flat_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


# --- the answer ------------------------------------------------------------------------------------


def read_event(event: Any) -> list[UpstreamEvent]:
    """Return what one Responses stream event says, as UpstreamEvents.

    A call's arguments are taken whole from its ``output_item.done`` (some servers send no
    deltas); text and reasoning stream as they come.
    """
    if not isinstance(event, dict):
        return [UpstreamFailed(code="upstream_protocol_error", message="The upstream sent a stream event that is "
                                                                       "not a JSON object.")]
    kind = event.get("type")
    if kind == "response.output_text.delta":
        return [TextDelta(text=str_of(event, "delta"))]
    if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        return [ReasoningDelta(text=str_of(event, "delta"))]
    if kind in ("response.output_item.added", "response.output_item.done"):
        return _call(event.get("item"), event.get("output_index"), done=kind.endswith("done"))
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        response = event.get("response")
        return _ending(response if isinstance(response, dict) else {})
    if kind == "error":
        return [UpstreamFailed(code=str_of(event, "code") or "upstream_error",
                               message=str_of(event, "message") or "The upstream reported an error.")]
    return []


def read_response(response: Any) -> list[UpstreamEvent]:
    """Return what a whole Response object says (an upstream that ignored ``stream``)."""
    if not isinstance(response, dict):
        return [UpstreamFailed(code="upstream_protocol_error", message="The upstream's answer is not a Response.")]
    events: list[UpstreamEvent] = [TextDelta(text=text) for text in output_texts(response)]
    for index, item in enumerate(response.get("output") or []):
        events += _call(item, index, done=False) + _call(item, index, done=True)
    return events + _ending(response)


def _call(item: Any, index: Any, *, done: bool) -> list[UpstreamEvent]:
    if not isinstance(item, dict) or not isinstance(index, int):
        return []
    kind = item.get("type")
    if kind == "function_call":
        namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
        name = _flat(str_of(item, "name"), namespace)
        arguments = str_of(item, "arguments")
    elif kind == "custom_tool_call":
        name, arguments = str_of(item, "name"), json.dumps({"input": str_of(item, "input")})
    else:
        return []
    if done:
        return [ToolCallDelta(index=index, arguments=arguments)]
    return [ToolCallDelta(index=index, call_id=str_of(item, "call_id") or None, name=name or None)]


def _flat(name: str, namespace: str | None) -> str:
    return ToolNamer().name_for(ToolTarget("function", name, namespace)) if namespace else name


def _ending(response: dict[str, Any]) -> list[UpstreamEvent]:
    status = response.get("status")
    if status == "failed":
        error = response.get("error") if isinstance(response.get("error"), dict) else None
        message = str_of(error, "message") if error else ""
        return [UpstreamFailed(code=(str_of(error, "code") if error else "") or "upstream_error",
                               message=message or "The upstream's response failed.")]
    usage = read_responses_usage(response.get("usage"))
    details = response.get("incomplete_details")
    reason = INCOMPLETE.get(str_of(details, "reason"), "length") if status == "incomplete" and isinstance(
        details, dict) else ("length" if status == "incomplete" else "stop")
    return [*([usage] if usage is not None else []), Finished(reason=reason)]


def check(body: dict[str, Any]) -> None:
    """Nothing a repaired upstream cannot honour but what the passthrough could not either: a bad ``input``."""
    if not isinstance(body.get("input"), (str, list)):
        raise InvalidRequestError("`input` must be a string or a list of items.", param="input")


DIALECT = Dialect(name="responses-repaired", endpoint="responses", wire="responses", to_request=to_request,
                  read_chunk=read_event, read_body=read_response, check=check)
