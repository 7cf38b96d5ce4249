"""Shared checks for bridge tests: the invariants every Responses stream must keep (responses-bridge.md §3)."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from bridge.events import UpstreamEvent
from bridge.stream import ResponseStream

LIFECYCLE = {"response.created", "response.in_progress"}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
ITEM_EVENTS_WITHOUT_ITEM_ID = {"response.output_item.added", "response.output_item.done"}


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


def assert_valid_stream(events: list[dict]) -> None:
    """Check what Codex and the openai SDK accumulator rely on, for any finished stream."""
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
    assert response["status"] == terminals[0]["type"].removeprefix("response.")
    assert response["output"] == [done[index] for index in sorted(done)]
