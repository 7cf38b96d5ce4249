"""Shared checks for bridge tests: the invariants every Responses stream must keep (docs/responses-bridge.md §3)."""
from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from openai.types.responses import (
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
    ResponseOutputItem,
    Tool,
)
from openresponses_types import types as spec
from pydantic import BaseModel, TypeAdapter

from bridge.events import UpstreamEvent
from bridge.sse import encode_event
from bridge.stream import ResponseStream

LIFECYCLE = {"response.created", "response.in_progress"}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
ITEM_EVENTS_WITHOUT_ITEM_ID = {"response.output_item.added", "response.output_item.done"}


# The Open Responses models (openresponses-types): every streaming event model, by the `type` it carries.
SPEC_EVENTS: dict[str, type[BaseModel]] = {
    member.value: model
    for model in vars(spec).values()
    if isinstance(model, type) and issubclass(model, BaseModel) and model.__name__.endswith("StreamingEvent")
    for member in model.model_fields["type"].annotation
}
# What the gateway sends that Open Responses does not define: the OpenAI API's own item, tool and
# event types, which Codex dispatches on. The spec wants extensions prefixed with a provider slug
# (`openai:custom_tool_call`); Codex knows only these names, so they are checked against the
# openai SDK's models instead, and everything else in their event or Response against the spec.
OPENAI_ITEM_TYPES = {"custom_tool_call", "local_shell_call", "compaction"}
OPENAI_TOOL_TYPES = {"custom", "local_shell", "namespace"}
OPENAI_EVENTS: dict[str, type[BaseModel]] = {
    "response.custom_tool_call_input.delta": ResponseCustomToolCallInputDeltaEvent,
    "response.custom_tool_call_input.done": ResponseCustomToolCallInputDoneEvent,
}
OPENAI_ITEM: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)
OPENAI_TOOL: TypeAdapter[Any] = TypeAdapter(Tool)
# Where those types sit in a Response object, and what checks them there.
OPENAI_PARTS = {"output": (OPENAI_ITEM_TYPES, OPENAI_ITEM), "tools": (OPENAI_TOOL_TYPES, OPENAI_TOOL)}


def counter_ids() -> Callable[[str], str]:
    """Return an id factory giving msg_1, fc_2, ...: deterministic ids for exact assertions."""
    numbers = itertools.count()
    return lambda prefix: f"{prefix}{next(numbers)}"


def run(events: Iterable[UpstreamEvent], *, finish: bool = True, **kwargs: Any) -> tuple[ResponseStream, list[dict]]:
    """Return a started stream fed with `events` (and finished), plus every event it gave."""
    kwargs.setdefault("model", "test-model")
    kwargs.setdefault("new_id", counter_ids())
    stream = ResponseStream(**kwargs)
    out = stream.start()
    for event in events:
        out += stream.feed(event)
    if finish:
        out += stream.finish()
    return stream, out


def types(events: list[dict]) -> list[str]:
    return [event["type"] for event in events]


def done_items(events: list[dict]) -> list[dict]:
    return [event["item"] for event in events if event["type"] == "response.output_item.done"]


def assert_spec_response(response: dict) -> None:
    """Check a Response object against Open Responses' ResponseResource, strictly, as the client reads it.

    Items and tools of the OpenAI types Open Responses lacks are checked against the openai SDK.
    """
    checked = dict(response)
    for key, (openai_types, adapter) in OPENAI_PARTS.items():
        values = response.get(key)
        if not isinstance(values, list):
            continue  # missing or malformed: ResponseResource says so below
        checked[key] = []
        for value in values:
            if isinstance(value, dict) and value.get("type") in openai_types:
                adapter.validate_json(json.dumps(value), strict=True)
            else:
                checked[key].append(value)
    spec.ResponseResource.model_validate_json(json.dumps(checked), strict=True)


def assert_spec_event(event: dict) -> None:
    """Check one streamed event, as encoded for the wire, against its Open Responses model (and its Response)."""
    frame = encode_event(event)
    name, data = frame.removesuffix(b"\n\n").split(b"\n")
    assert name == b"event: " + event["type"].encode(), "the `event` field must match the type"
    wire = json.loads(data.removeprefix(b"data: "))
    kind = wire["type"]
    if kind in OPENAI_EVENTS:
        OPENAI_EVENTS[kind].model_validate_json(json.dumps(wire), strict=True)
        return
    assert kind in SPEC_EVENTS, f"{kind} is neither an Open Responses event nor an OpenAI one"
    if "response" in wire:
        assert_spec_response(wire["response"])
        wire["response"] = {**wire["response"], "output": [], "tools": []}  # their items were checked just now
    item = wire.get("item")
    if isinstance(item, dict) and item.get("type") in OPENAI_ITEM_TYPES:
        OPENAI_ITEM.validate_json(json.dumps(item), strict=True)
        wire["item"] = None  # the spec's `item` is nullable: the rest of the event is still checked
    SPEC_EVENTS[kind].model_validate_json(json.dumps(wire), strict=True)


def assert_spec_stream(events: list[dict]) -> None:
    """Check every event of a stream, and every Response snapshot in it, against Open Responses."""
    for event in events:
        assert_spec_event(event)


def assert_valid_stream(events: list[dict]) -> None:
    """Check what Codex, the openai SDK accumulator and the Open Responses models rely on, for any finished stream."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    lifecycle_ids = {event["response"]["id"] for event in events if event["type"] in LIFECYCLE | TERMINAL}
    assert len(lifecycle_ids) == 1, f"response id changed: {lifecycle_ids}"
    terminals = [event for event in events if event["type"] in TERMINAL]
    assert len(terminals) == 1, f"expected exactly one terminal event, got {types(terminals)}"
    assert events[-1] is terminals[0], "the terminal event must be last"

    added: dict[int, dict] = {}
    done: dict[int, dict] = {}
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            index = event["output_index"]
            assert index not in added, f"output_index {index} added twice"
            assert index == len(added), "output indexes are handed out in order"
            added[index] = event["item"]
        elif kind == "response.output_item.done":
            index = event["output_index"]
            assert index in added, f"{kind} for output_index {index} before it was added"
            assert index not in done, f"output_index {index} done twice"
            assert event["item"]["id"] == added[index]["id"]
            assert event["item"]["type"] == added[index]["type"]
            assert event["item"].get("call_id") == added[index].get("call_id")
            done[index] = event["item"]
        elif "output_index" in event:
            index = event["output_index"]
            assert index in added, f"{kind} for output_index {index} before it was added"
            assert index not in done, f"{kind} for output_index {index} after it was done"
            assert event["item_id"] == added[index]["id"], f"{kind} names the wrong item"
    assert added.keys() == done.keys(), "every added item must be done before the terminal event"

    response = terminals[0]["response"]
    assert response["object"] == "response"
    # A cancelled background response ends with response.failed (there is no response.cancelled).
    ended = terminals[0]["type"].removeprefix("response.")
    assert response["status"] == ended or (ended, response["status"]) == ("failed", "cancelled")
    assert response["output"] == [done[index] for index in sorted(done)]
    assert_spec_stream(events)
