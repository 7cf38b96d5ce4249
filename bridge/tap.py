"""Watch a passthrough body go by: usage, tool calls, and whether it ended properly.

Passthrough relays the upstream's bytes untouched; the audit log still wants tokens and
tool-call counts, and a stream that stops early must be noticed so the client is told.
"""
from __future__ import annotations

from typing import Any

import orjson

from bridge.sse import SSEDecoder

TokenCounts = dict[str, int | None]


class StreamTap:
    """Read a copy of the relayed body, SSE or JSON, for Chat or Responses."""

    def __init__(self, api: str, *, sse: bool) -> None:
        self.api = api  # "chat" or "responses"
        self.sse = sse
        self.tokens: TokenCounts = {}
        self.tool_calls = 0
        self.complete = False
        self.error: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.sequence_number = -1
        self._buffer = b""  # a JSON body, read whole
        self._decoder = SSEDecoder()
        self._calls: set[tuple[int, int]] = set()

    def feed(self, data: bytes) -> None:
        if not self.sse:
            self._buffer += data
            return
        for payload in self._decoder.feed(data):
            self._on_data(payload)

    def close(self) -> None:
        """Account for what is left once the upstream body has ended."""
        if not self.sse:
            value = _loads(self._buffer)
            if isinstance(value, dict):
                self.complete = True
                self._on_object(value, final=True)
            self._buffer = b""
            return
        for payload in self._decoder.close():
            self._on_data(payload)

    def _on_data(self, payload: bytes) -> None:
        payload = payload.strip()
        if payload == b"[DONE]":
            self.complete = True
            return
        value = _loads(payload)
        if isinstance(value, dict):
            self._on_object(value, final=False)

    def _on_object(self, value: dict[str, Any], *, final: bool) -> None:
        if isinstance(value.get("error"), dict) and self.api == "chat":
            self.error = value["error"]
        if self.api == "chat":
            self._on_chat(value, final=final)
        else:
            self._on_responses(value, final=final)

    def _on_chat(self, chunk: dict[str, Any], *, final: bool) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.tokens = chat_tokens(usage)
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.complete = True
            part = choice.get("message" if final else "delta") or {}
            for call in part.get("tool_calls") or []:
                index = call.get("index", len(self._calls)) if isinstance(call, dict) else 0
                self._calls.add((choice.get("index", 0), index))
        self.tool_calls = len(self._calls)

    def _on_responses(self, event: dict[str, Any], *, final: bool) -> None:
        if isinstance(event.get("sequence_number"), int):
            self.sequence_number = event["sequence_number"]
        response = event if final else event.get("response")
        if isinstance(response, dict):
            self.response_id = response.get("id", self.response_id)
            self.model = response.get("model", self.model)
            if isinstance(response.get("usage"), dict):
                self.tokens = responses_tokens(response["usage"])
        kind = event.get("type")
        if kind in ("response.completed", "response.incomplete", "response.failed", "error"):
            self.complete = True
        if kind == "response.output_item.done":
            self.tool_calls += _is_call(event.get("item"))
        if final:
            self.tool_calls = sum(_is_call(i) for i in event.get("output") or [])


def _is_call(item: Any) -> int:
    return int(isinstance(item, dict) and str(item.get("type", "")).endswith("_call"))


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def chat_tokens(usage: dict[str, Any]) -> TokenCounts:
    """Return audit token counts from a Chat ``usage`` object."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return {"input_tokens": _int(usage.get("prompt_tokens")), "output_tokens": _int(usage.get("completion_tokens")),
            "cached_tokens": _int(prompt.get("cached_tokens")),
            "reasoning_tokens": _int(completion.get("reasoning_tokens"))}


def responses_tokens(usage: dict[str, Any]) -> TokenCounts:
    """Return audit token counts from a Responses ``usage`` object."""
    inp = usage.get("input_tokens_details") or {}
    out = usage.get("output_tokens_details") or {}
    return {"input_tokens": _int(usage.get("input_tokens")), "output_tokens": _int(usage.get("output_tokens")),
            "cached_tokens": _int(inp.get("cached_tokens")), "reasoning_tokens": _int(out.get("reasoning_tokens"))}


def failure_trailer(tap: StreamTap, code: str, message: str) -> bytes:
    """Return what ends a relayed stream that broke, so the client is told instead of left hanging.

    Chat clients get ``data: {"error": ...}``; Responses clients get ``response.failed``
    continuing the upstream's own response id and sequence numbers.
    """
    error = {"code": code, "message": message}
    if tap.api == "chat":
        body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
        return b"data: " + orjson.dumps(body) + b"\n\n"
    event = {
        "type": "response.failed",
        "sequence_number": tap.sequence_number + 1,
        "response": {"id": tap.response_id or "resp_failed", "object": "response", "status": "failed",
                     "model": tap.model, "output": [], "error": error, "incomplete_details": None,
                     "usage": None},
    }
    return b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"
