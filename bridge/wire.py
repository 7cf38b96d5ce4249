"""The Responses stream's events: each type is built here, in exactly one place (docs/responses-bridge.md §3).

``ResponseStream`` (bridge/stream.py) decides which event comes next and numbers it; the
tap (closing a relayed stream that broke) and a background response's relayed events
(bridge/background.py) use the same builders, so that grepping an event's type lands here.
A terminal event's type follows from its Response's ``status``: one builder ends every stream.
"""
from __future__ import annotations

from typing import Any

from bridge.errors import BridgeError

Event = dict[str, Any]
TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
# A Response's status -> the event that ends its stream. Neither the OpenAI API nor Open
# Responses has a `response.cancelled` event: a cancelled response ends with response.failed,
# whose Response says `status: "cancelled"`.
_TERMINAL_BY_STATUS = {"completed": "response.completed", "incomplete": "response.incomplete"}


def event(type_: str, sequence_number: int, **fields: Any) -> Event:
    return {"type": type_, "sequence_number": sequence_number, **fields}


def created(sequence_number: int, response: dict[str, Any]) -> Event:
    return event("response.created", sequence_number, response=response)


def queued(sequence_number: int, response: dict[str, Any]) -> Event:
    return event("response.queued", sequence_number, response=response)


def in_progress(sequence_number: int, response: dict[str, Any]) -> Event:
    return event("response.in_progress", sequence_number, response=response)


def terminal(sequence_number: int, response: dict[str, Any]) -> Event:
    """Return the event that ends a stream: completed, incomplete, or failed (cancelled too), by its status."""
    kind = _TERMINAL_BY_STATUS.get(str(response.get("status")), "response.failed")
    return event(kind, sequence_number, response=response)


def item_added(sequence_number: int, output_index: int, item: dict[str, Any]) -> Event:
    return event("response.output_item.added", sequence_number, output_index=output_index, item=item)


def item_done(sequence_number: int, output_index: int, item: dict[str, Any]) -> Event:
    return event("response.output_item.done", sequence_number, output_index=output_index, item=item)


def content_part_added(sequence_number: int, ref: dict[str, Any], part: dict[str, Any]) -> Event:
    return event("response.content_part.added", sequence_number, **ref, content_index=0, part=part)


def output_text_delta(sequence_number: int, ref: dict[str, Any], delta: str, logprobs: list[dict[str, Any]]
                      ) -> Event:
    return event("response.output_text.delta", sequence_number, **ref, content_index=0, delta=delta,
                 logprobs=logprobs)


def output_text_done(sequence_number: int, ref: dict[str, Any], text: str, logprobs: list[dict[str, Any]]) -> Event:
    return event("response.output_text.done", sequence_number, **ref, content_index=0, text=text, logprobs=logprobs)


def content_part_done(sequence_number: int, ref: dict[str, Any], part: dict[str, Any]) -> Event:
    return event("response.content_part.done", sequence_number, **ref, content_index=0, part=part)


def summary_part_added(sequence_number: int, ref: dict[str, Any]) -> Event:
    part = {"type": "summary_text", "text": ""}
    return event("response.reasoning_summary_part.added", sequence_number, **ref, summary_index=0, part=part)


def summary_text_delta(sequence_number: int, ref: dict[str, Any], delta: str) -> Event:
    return event("response.reasoning_summary_text.delta", sequence_number, **ref, summary_index=0, delta=delta)


def summary_text_done(sequence_number: int, ref: dict[str, Any], text: str) -> Event:
    return event("response.reasoning_summary_text.done", sequence_number, **ref, summary_index=0, text=text)


def summary_part_done(sequence_number: int, ref: dict[str, Any], text: str) -> Event:
    part = {"type": "summary_text", "text": text}
    return event("response.reasoning_summary_part.done", sequence_number, **ref, summary_index=0, part=part)


def arguments_delta(sequence_number: int, ref: dict[str, Any], delta: str) -> Event:
    return event("response.function_call_arguments.delta", sequence_number, **ref, delta=delta)


def arguments_done(sequence_number: int, ref: dict[str, Any], name: str | None, arguments: str) -> Event:
    return event("response.function_call_arguments.done", sequence_number, **ref, name=name, arguments=arguments)


def custom_input_delta(sequence_number: int, ref: dict[str, Any], delta: str) -> Event:
    return event("response.custom_tool_call_input.delta", sequence_number, **ref, delta=delta)


def custom_input_done(sequence_number: int, ref: dict[str, Any], text: str) -> Event:
    return event("response.custom_tool_call_input.done", sequence_number, **ref, input=text)


def stream_error(sequence_number: int, error: BridgeError) -> Event:
    """Return the stream's ``error`` event (Open Responses ``ErrorStreamingEvent``): a watch failed, not a response."""
    return event("error", sequence_number, error=error.to_dict()["error"])
