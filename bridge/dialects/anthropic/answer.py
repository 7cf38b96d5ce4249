"""An Anthropic Messages answer read back: stream events (or a whole message) -> UpstreamEvents.

Messages streams content blocks by index: ``content_block_start`` says what block ``index``
is, its deltas and ``content_block_stop`` name only the index, and the usage comes in two
parts (the input's in ``message_start``, the output's in ``message_delta``). So one reader
per answer (``MessagesReader``) keeps what the blocks are; like the Chat reader it never
raises: what it cannot read becomes an UpstreamFailed.
"""
from __future__ import annotations

import json
from typing import Any

from bridge.dialects.anthropic import thinking
from bridge.events import (
    Finished,
    ReasoningDelta,
    ReasoningSealed,
    TextDelta,
    ToolCallDelta,
    UpstreamEvent,
    UpstreamFailed,
    UsageReported,
)
from bridge.values import as_int, str_of

PROTOCOL_ERROR = "upstream_protocol_error"
# Anthropic's stop_reason in the Chat vocabulary ResponseStream reads: length and content_filter
# end the Response incomplete (max_output_tokens, content_filter), the rest completes it.
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "tool_use": "tool_calls",
                "max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "content_filter"}
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
TOOL_BLOCKS = ("tool_use", "server_tool_use")


class MessagesReader:
    """Read one streamed Messages answer, event by event (a new reader per answer)."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}  # by index: the block as started, thinking gathered
        self.usage: dict[str, int] = {}

    def __call__(self, event: Any) -> list[UpstreamEvent]:
        if not isinstance(event, dict):
            return [_garbage(f"expected a JSON object as a stream event, got {type(event).__name__}")]
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            self._add_usage(message.get("usage") if isinstance(message, dict) else None)
            return []
        if kind == "content_block_start":
            return self._start(event)
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_stop":
            return self._stop(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "error":
            return [error_event(event.get("error"))]
        return []  # ping, message_stop, and events a later API version adds

    def _start(self, event: dict[str, Any]) -> list[UpstreamEvent]:
        index, block = as_int(event.get("index")), event.get("content_block")
        if index is None or not isinstance(block, dict):
            return [_garbage("content_block_start without an index or a content_block")]
        self.blocks[index] = dict(block)
        return _block_events(index, block)

    def _delta(self, event: dict[str, Any]) -> list[UpstreamEvent]:
        index, delta = as_int(event.get("index")), event.get("delta")
        block = self.blocks.get(index) if index is not None else None
        if index is None or block is None or not isinstance(delta, dict):
            return [_garbage(f"content_block_delta for block {index!r}, which never started")]
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(text=str_of(delta, "text"))]
        if kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str_of(delta, "thinking")
            return [ReasoningDelta(text=str_of(delta, "thinking"))]
        if kind == "signature_delta":
            block["signature"] = block.get("signature", "") + str_of(delta, "signature")
        elif kind == "input_json_delta" and str_of(delta, "partial_json"):
            return [ToolCallDelta(index=index, arguments=delta["partial_json"])]
        return []  # citations and later kinds carry nothing a Response has

    def _stop(self, event: dict[str, Any]) -> list[UpstreamEvent]:
        index = as_int(event.get("index"))
        block = self.blocks.get(index) if index is not None else None
        if block is not None and block.get("type") in ("thinking", "redacted_thinking"):
            return [ReasoningSealed(encrypted_content=thinking.seal(block))]
        return []

    def _message_delta(self, event: dict[str, Any]) -> list[UpstreamEvent]:
        self._add_usage(event.get("usage"))
        delta = event.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        events: list[UpstreamEvent] = []
        usage = usage_event(self.usage)
        if usage is not None:
            events.append(usage)
        if isinstance(reason, str) and reason:
            events.append(Finished(reason=STOP_REASONS.get(reason, "stop")))
        return events

    def _add_usage(self, usage: Any) -> None:
        """Keep the counts given: message_delta's are cumulative, so a later value replaces an earlier one."""
        if isinstance(usage, dict):
            self.usage |= {name: value for name in USAGE_FIELDS if (value := as_int(usage.get(name))) is not None}


def read_message(body: Any) -> list[UpstreamEvent]:
    """Return the events a whole Messages answer would have streamed (a server that ignored ``stream``)."""
    if not isinstance(body, dict):
        return [_garbage(f"expected a JSON object as a message, got {type(body).__name__}")]
    if body.get("type") == "error":
        return [error_event(body.get("error"))]
    content = body.get("content")
    if not isinstance(content, list):
        return [_garbage("the message has no `content` list")]
    events: list[UpstreamEvent] = []
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        events += _block_events(index, block)
        if block.get("type") in ("thinking", "redacted_thinking"):
            events.append(ReasoningSealed(encrypted_content=thinking.seal(block)))
    given = body.get("usage")
    usage = usage_event(given if isinstance(given, dict) else {})
    if usage is not None:
        events.append(usage)
    reason = body.get("stop_reason")
    events.append(Finished(reason=STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"))
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[UpstreamEvent]:
    """The events a block says as it starts (or, in a whole message, all it says but its end)."""
    kind = block.get("type")
    if kind == "text" and str_of(block, "text"):
        return [TextDelta(text=block["text"])]
    if kind == "thinking" and str_of(block, "thinking"):
        return [ReasoningDelta(text=block["thinking"])]
    if kind in TOOL_BLOCKS:
        given = block.get("input")
        arguments = json.dumps(given, ensure_ascii=False) if isinstance(given, dict) and given else ""
        return [ToolCallDelta(index=index, call_id=str_of(block, "id") or None, name=str_of(block, "name") or None,
                              arguments=arguments)]
    return []


def usage_event(usage: dict[str, Any]) -> UsageReported | None:
    """Return Anthropic's usage as a Responses client counts it: input with its cached parts, cached read apart.

    Anthropic's ``input_tokens`` are only the uncached ones; the cache's reads and writes are
    counted beside them. OpenAI's ``input_tokens`` are all of them, ``cached_tokens`` the reads.
    """
    counts = {name: as_int(usage.get(name)) for name in USAGE_FIELDS}
    if counts["input_tokens"] is None and counts["output_tokens"] is None:
        return None
    read = counts["cache_read_input_tokens"] or 0
    given = (counts["input_tokens"] or 0) + read + (counts["cache_creation_input_tokens"] or 0)
    output = counts["output_tokens"] or 0
    return UsageReported(input_tokens=given, output_tokens=output, total_tokens=given + output,
                         cached_tokens=read if counts["cache_read_input_tokens"] is not None else None)


def error_event(error: Any) -> UpstreamFailed:
    """Return the event for an ``error`` event or body: its type (overloaded_error...) as the code, its message."""
    if not isinstance(error, dict):
        return UpstreamFailed(code="upstream_error", message=str(error))
    return UpstreamFailed(code=str_of(error, "type") or "upstream_error",
                          message=str_of(error, "message") or json.dumps(error, ensure_ascii=False))


def _garbage(message: str) -> UpstreamFailed:
    return UpstreamFailed(code=PROTOCOL_ERROR, message=message)


RATELIMIT_PREFIX = "anthropic-ratelimit-"


def ratelimit_headers(headers: dict[str, str]) -> dict[str, str]:
    """Return Anthropic's rate-limit headers as they are, and under the names OpenAI clients read.

    ``anthropic-ratelimit-requests-remaining`` is ``x-ratelimit-remaining-requests`` to the openai
    SDKs and Codex; the reset is an RFC 3339 time in both names (OpenAI's is a duration).
    """
    given = {name.lower(): value for name, value in headers.items() if name.lower().startswith(RATELIMIT_PREFIX)}
    aliases = {}
    for name, value in given.items():
        kind, _, measure = name[len(RATELIMIT_PREFIX):].rpartition("-")
        if kind in ("requests", "tokens") and measure in ("limit", "remaining", "reset"):
            aliases[f"x-ratelimit-{measure}-{kind}"] = value
    return given | aliases
