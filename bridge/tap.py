"""Watch a passthrough body go by: usage, tool calls, and whether it ended properly.

Passthrough relays the upstream's bytes untouched; the audit log still wants tokens and
tool-call counts, and a stream that stops early must be noticed so the client is told.
"""
from __future__ import annotations

from typing import Any

import orjson

from bridge import wire
from bridge.dialects.base import Wire
from bridge.dialects.chat.answer import read_usage as read_chat_usage
from bridge.errors import UpstreamError
from bridge.events import UsageReported
from bridge.response import failed_response, read_responses_usage
from bridge.sse import SSEDecoder, encode_comment, encode_data, encode_event


class StreamTap:
    """Read a copy of the relayed body, SSE or JSON, for Chat or Responses."""

    def __init__(self, api: Wire, *, sse: bool, strip_usage: bool = False) -> None:
        self.api = api
        self.sse = sse
        # A Chat stream asked for usage by the gateway, not its client: the usage chunk is taken out.
        self.strip_usage = strip_usage and sse and api == "chat"
        self.usage: UsageReported | None = None
        self.tool_calls = 0
        self.complete = False
        self.error: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.sequence_number = -1
        self.final_response: dict[str, Any] | None = None  # a Responses answer's finished Response object
        self._buffer = b""  # a JSON body, read whole
        self._decoder = SSEDecoder()
        self._calls: set[tuple[int, int]] = set()
        self.open_items: dict[int, dict[str, Any]] = {}  # a Responses stream's items added and not yet done
        self.standing: dict[str, Any] | None = None  # the Response as a Responses stream last showed it
        self.inserted = 0  # heartbeats put into a Responses stream: the upstream's later events are numbered after

    def feed(self, data: bytes) -> None:
        """Watch one read of the relayed body (every read of every relayed answer: kept lean)."""
        if not self.sse:
            self._buffer += data
            return
        for payload in self._decoder.feed(data):
            self._on_data(payload)

    @property
    def between_events(self) -> bool:
        """Whether the relayed SSE body so far ends between two events, where a heartbeat may go."""
        return self.sse and not self.complete and self._decoder.between_events

    def heartbeat(self) -> bytes:
        """Return what tells a client its silent upstream's answer is alive; b"" when nothing may go in now.

        A Responses stream gets a ``response.in_progress`` with the Response as the upstream last
        showed it, numbered next, and the upstream's later events renumbered after it (``shifted``);
        Codex's idle timeout counts events, not comments. A Chat stream, or a Responses stream
        before its Response was shown, gets an SSE comment.
        """
        if not self.between_events:
            return b""
        if self.api == "chat" or self.standing is None:
            return KEEP_ALIVE
        self.inserted += 1
        response = {**self.standing, "status": "in_progress"}
        return encode_event(wire.in_progress(self.sequence_number + self.inserted, response))

    def shifted(self, data: bytes) -> bytes:
        """Watch one read of a Responses stream that had heartbeats, and return its whole events renumbered.

        Only streams that paused pay for re-encoding; until then the relay passes bytes untouched.
        """
        out = []
        for payload in self._decoder.feed(data):
            event = self._on_data(payload)
            if event is None or "type" not in event:
                out.append(b"data: " + payload + b"\n\n")
                continue
            number = event.get("sequence_number")
            if isinstance(number, int):
                event["sequence_number"] = number + self.inserted
            out.append(encode_event(event))
        return b"".join(out)

    def without_usage(self, data: bytes) -> bytes:
        """Watch one read of a Chat stream whose usage the gateway asked for; return its whole chunks, usage's left out.

        The usage is read (the row's tokens), and the chunk that carries only it is not sent:
        the client did not ask for it. Costs a split per event, on these streams only.
        """
        out = []
        for payload in self._decoder.feed(data):
            chunk = self._on_data(payload)
            if chunk is not None and not chunk.get("choices") and isinstance(chunk.get("usage"), dict):
                continue
            out.append(b"data: " + payload + b"\n\n")
        return b"".join(out)

    def events(self, data: bytes) -> list[dict[str, Any]]:
        """Watch one read of a relayed SSE body, and return the event objects it completed."""
        found = []
        for payload in self._decoder.feed(data):
            value = self._on_data(payload)
            if value is not None:
                found.append(value)
        return found

    def close(self) -> bytes:
        """Account for what is left once the upstream body has ended; return what is still to be sent.

        That is a renumbered stream's last event when the upstream left out its blank line
        (``shifted`` holds back what is not a whole event); b"" otherwise.
        """
        if not self.sse:
            value = _loads(self._buffer)
            if isinstance(value, dict):
                self.complete = True
                self._on_object(value, final=True)
            self._buffer = b""
            return b""
        if self.inserted:
            return self.shifted(b"\n\n") if not self._decoder.between_events else b""
        if self.strip_usage:
            return self.without_usage(b"\n\n") if not self._decoder.between_events else b""
        for payload in self._decoder.close():
            self._on_data(payload)
        return b""

    def _on_data(self, payload: bytes) -> dict[str, Any] | None:
        payload = payload.strip()
        if payload == b"[DONE]":
            self.complete = True
            return None
        value = _loads(payload)
        if not isinstance(value, dict):
            return None
        self._on_object(value, final=False)
        return value

    def _on_object(self, value: dict[str, Any], *, final: bool) -> None:
        if isinstance(value.get("error"), dict) and self.api == "chat":
            self.error = value["error"]
        if self.api == "chat":
            self._on_chat(value, final=final)
        else:
            self._on_responses(value, final=final)

    def _on_chat(self, chunk: dict[str, Any], *, final: bool) -> None:
        usage = read_chat_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
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
        # An upstream that numbers nothing (llama.cpp) still gets a failure numbered after its events.
        number = event.get("sequence_number")
        if not final:
            self.sequence_number = number if isinstance(number, int) else self.sequence_number + 1
        kind = event.get("type")
        terminal = kind in wire.TERMINAL_EVENTS
        response = event if final else event.get("response")
        if isinstance(response, dict):
            self._on_response(response, last=final or terminal)
        if terminal or kind == "error":
            self.complete = True
        if final:
            self.tool_calls = sum(_is_call(i) for i in event.get("output") or [])
        else:
            self._on_item(kind, event.get("output_index"), event.get("item"))

    def _on_response(self, response: dict[str, Any], *, last: bool) -> None:
        """Note what a Response object says: its id, model and usage; the finished one when it is the last."""
        self.response_id = response.get("id", self.response_id)
        self.model = response.get("model", self.model)
        usage = read_responses_usage(response.get("usage"))
        if usage is not None:
            self.usage = usage
        if last and response.get("object") == "response":
            self.final_response = response
        self.standing = response

    def _on_item(self, kind: Any, index: Any, item: Any) -> None:
        """Keep the items added and not yet done (to close them if the stream breaks); count the calls done."""
        if kind == "response.output_item.added" and isinstance(index, int) and isinstance(item, dict):
            self.open_items[index] = item
        if kind == "response.output_item.done":
            self.tool_calls += _is_call(item)
            if isinstance(index, int):
                self.open_items.pop(index, None)


KEEP_ALIVE = encode_comment("keep-alive")


def _is_call(item: Any) -> int:
    return int(isinstance(item, dict) and str(item.get("type", "")).endswith("_call"))


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def failure_trailer(tap: StreamTap, code: str, message: str) -> bytes:
    """Return what ends a relayed stream that broke, so the client is told instead of left hanging.

    Chat clients get ``data: {"error": ...}``; Responses clients get each item still open
    closed (``response.output_item.done``, status ``incomplete``), then ``response.failed``,
    continuing the upstream's own response id and sequence numbers: an accumulator (the
    openai SDK's) then holds a whole, failed response rather than a dangling item.
    """
    if tap.api == "chat":
        return encode_data(UpstreamError(message, code=code).to_dict())
    number = tap.sequence_number + tap.inserted
    out, closed = b"", []
    for index in sorted(tap.open_items):
        number += 1
        item = {**tap.open_items[index], "status": "incomplete"}
        closed.append(item)
        out += encode_event(wire.item_done(number, index, item))
    response = failed_response(tap.response_id or "resp_failed", tap.model, code, message, output=closed)
    return out + encode_event(wire.terminal(number + 1, response))
