"""The capability probe for an Anthropic Messages server (Claude, or an Anthropic-compatible endpoint).

Three small requests to ``{base}/v1/messages`` with the upstream's key as ``x-api-key``:

1. a stream of at most 16 tokens: does it stream Messages events (``message_start`` ... a
   ``message_delta`` with a stop reason, ``message_stop``), as the bridge reads them?
2. a forced tool (``tool_choice: {"type": "tool"}``): does a ``tool_use`` block come back?
3. extended thinking (a budget of 1,024 tokens): does a ``thinking`` block with its signature
   come back? Taken: *send reasoning effort* on (Codex's efforts become thinking budgets);
   refused or ignored: off, so the Response never claims a thinking it did not get.
"""
from __future__ import annotations

from typing import Any

import httpx

from bridge.dialects import protocol_headers
from bridge.sse import decode_values
from upstreams.models import Upstream
from upstreams.probe.reach import failure_text

MAX_TOKENS = 16
THINKING_MAX_TOKENS = 2048
TOOL = {"name": "get_time", "description": "The current time in a time zone.",
        "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}


class MessagesAsker:
    """Asks one Anthropic server the probe's questions, as the gateway would send them."""

    def __init__(self, upstream: Upstream, model: str, timeout: float) -> None:
        self.upstream, self.model = upstream, model
        self.client = httpx.Client(timeout=timeout, trust_env=False,
                                   headers=protocol_headers("anthropic", upstream.api_key))

    def ask(self, **fields: Any) -> httpx.Response:
        body = {"model": self.model, "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": "What time is it in UTC? Say it briefly."}], **fields}
        return self.client.post(self.upstream.url("messages"), json=body)

    def why(self, response: httpx.Response) -> str:
        return failure_text(response, None, self.upstream.api_key)


Found = tuple[str, bool, str, str, dict[str, Any]]  # check, ok, detail, advice, settings


def messages_findings(asker: MessagesAsker) -> list[Found]:
    """The findings of the three checks; a server that does not stream Messages is asked nothing more."""
    streamed = _stream_check(asker)
    if not streamed[1] and not streamed[2].endswith("no stop reason"):
        return [streamed]
    return [streamed, _tool_check(asker), _thinking_check(asker)]


def _stream_check(asker: MessagesAsker) -> Found:
    answer = asker.ask(stream=True)
    if answer.status_code >= 400:
        return ("messages stream", False, asker.why(answer), "check the base URL and the key (sent as x-api-key)", {})
    events = [e for e in decode_values(answer.content) if isinstance(e, dict)]
    if not any(e.get("type") == "message_start" for e in events):
        return ("messages stream", False, "no Messages events (message_start...)", "check the base URL", {})
    stopped = any(e.get("type") == "message_delta" and (e.get("delta") or {}).get("stop_reason") for e in events)
    return ("messages stream", stopped, f"{len(events)} events" + ("" if stopped else ", no stop reason"), "", {})


def _tool_check(asker: MessagesAsker) -> Found:
    tool = asker.ask(tools=[TOOL], tool_choice={"type": "tool", "name": "get_time"}, max_tokens=64)
    if tool.status_code >= 400:
        return ("tools", False, asker.why(tool), "", {})
    used = any(block.get("type") == "tool_use" for block in _content(tool))
    return ("tools", used, "a tool_use block came back" if used else "no tool_use block", "", {})


def _thinking_check(asker: MessagesAsker) -> Found:
    thinking = asker.ask(max_tokens=THINKING_MAX_TOKENS, thinking={"type": "enabled", "budget_tokens": 1024})
    signed = thinking.status_code < 400 and any(
        block.get("type") in ("thinking", "redacted_thinking") and (block.get("signature") or block.get("data"))
        for block in _content(thinking))
    detail = "a signed thinking block came back" if signed else (
        asker.why(thinking) if thinking.status_code >= 400 else "taken, but no thinking block came back")
    advice = "turn on send reasoning effort (thinking)" if signed else "keep send reasoning effort off"
    return ("thinking", signed, detail, advice, {"send_reasoning_effort": signed})


def _content(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        content = response.json().get("content")
    except ValueError:
        return []
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []
