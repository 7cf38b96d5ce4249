"""The Responses stream's events: each type is built here, in exactly one place (docs/responses-bridge.md §3).

``ResponseStream`` (bridge/stream.py) decides which event comes next and numbers it; the
tap (closing a relayed stream that broke) and a background response's relayed events
(bridge/background.py) use the same builders, so that grepping an event's type lands here.
A terminal event's type follows from its Response's ``status``: one builder ends every stream.
Each builder is one dict literal: they run for every delta of every answer.
"""
from __future__ import annotations

from typing import Any

from bridge.errors import BridgeError

Event = dict[str, Any]
Ref = dict[str, Any]  # an item's {"item_id", "output_index"}
TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
# A Response's status -> the event that ends its stream. Neither the OpenAI API nor Open
# Responses has a `response.cancelled` event: a cancelled response ends with response.failed,
# whose Response says `status: "cancelled"`.
_TERMINAL_BY_STATUS = {"completed": "response.completed", "incomplete": "response.incomplete"}


def created(sequence_number: int, response: dict[str, Any]) -> Event:
    return {"type": "response.created", "sequence_number": sequence_number, "response": response}


def queued(sequence_number: int, response: dict[str, Any]) -> Event:
    return {"type": "response.queued", "sequence_number": sequence_number, "response": response}


def in_progress(sequence_number: int, response: dict[str, Any]) -> Event:
    return {"type": "response.in_progress", "sequence_number": sequence_number, "response": response}


def terminal(sequence_number: int, response: dict[str, Any]) -> Event:
    """Return the event that ends a stream: completed, incomplete, or failed (cancelled too), by its status."""
    kind = _TERMINAL_BY_STATUS.get(str(response.get("status")), "response.failed")
    return {"type": kind, "sequence_number": sequence_number, "response": response}


def item_added(sequence_number: int, output_index: int, item: dict[str, Any]) -> Event:
    return {"type": "response.output_item.added", "sequence_number": sequence_number, "output_index": output_index,
            "item": item}


def item_done(sequence_number: int, output_index: int, item: dict[str, Any]) -> Event:
    return {"type": "response.output_item.done", "sequence_number": sequence_number, "output_index": output_index,
            "item": item}


def content_part_added(sequence_number: int, ref: Ref, part: dict[str, Any]) -> Event:
    return {"type": "response.content_part.added", "sequence_number": sequence_number, **ref, "content_index": 0,
            "part": part}


def output_text_delta(sequence_number: int, ref: Ref, delta: str, logprobs: list[dict[str, Any]]) -> Event:
    return {"type": "response.output_text.delta", "sequence_number": sequence_number, **ref, "content_index": 0,
            "delta": delta, "logprobs": logprobs}


def output_text_done(sequence_number: int, ref: Ref, text: str, logprobs: list[dict[str, Any]]) -> Event:
    return {"type": "response.output_text.done", "sequence_number": sequence_number, **ref, "content_index": 0,
            "text": text, "logprobs": logprobs}


def content_part_done(sequence_number: int, ref: Ref, part: dict[str, Any]) -> Event:
    return {"type": "response.content_part.done", "sequence_number": sequence_number, **ref, "content_index": 0,
            "part": part}


def summary_part_added(sequence_number: int, ref: Ref) -> Event:
    return {"type": "response.reasoning_summary_part.added", "sequence_number": sequence_number, **ref,
            "summary_index": 0, "part": {"type": "summary_text", "text": ""}}


def summary_text_delta(sequence_number: int, ref: Ref, delta: str) -> Event:
    return {"type": "response.reasoning_summary_text.delta", "sequence_number": sequence_number, **ref,
            "summary_index": 0, "delta": delta}


def summary_text_done(sequence_number: int, ref: Ref, text: str) -> Event:
    return {"type": "response.reasoning_summary_text.done", "sequence_number": sequence_number, **ref,
            "summary_index": 0, "text": text}


def summary_part_done(sequence_number: int, ref: Ref, text: str) -> Event:
    return {"type": "response.reasoning_summary_part.done", "sequence_number": sequence_number, **ref,
            "summary_index": 0, "part": {"type": "summary_text", "text": text}}


def arguments_delta(sequence_number: int, ref: Ref, delta: str) -> Event:
    return {"type": "response.function_call_arguments.delta", "sequence_number": sequence_number, **ref,
            "delta": delta}


def arguments_done(sequence_number: int, ref: Ref, name: str | None, arguments: str) -> Event:
    return {"type": "response.function_call_arguments.done", "sequence_number": sequence_number, **ref,
            "name": name, "arguments": arguments}


def custom_input_delta(sequence_number: int, ref: Ref, delta: str) -> Event:
    return {"type": "response.custom_tool_call_input.delta", "sequence_number": sequence_number, **ref,
            "delta": delta}


def custom_input_done(sequence_number: int, ref: Ref, text: str) -> Event:
    return {"type": "response.custom_tool_call_input.done", "sequence_number": sequence_number, **ref,
            "input": text}


def stream_error(sequence_number: int, error: BridgeError) -> Event:
    """Return the stream's ``error`` event (Open Responses ``ErrorStreamingEvent``): a watch failed, not a response."""
    return {"type": "error", "sequence_number": sequence_number, "error": error.to_dict()["error"]}
