"""Background responses, the protocol side: queued streams, cancels, resuming after N, relayed events renumbered."""
from __future__ import annotations

from typing import Any

import pytest

from bridge import background
from bridge.errors import InvalidRequestError
from bridge.events import Finished, TextDelta, ToolCallDelta
from bridge.history.items import wants_background
from bridge.stream import BridgeStateError, Phase, ResponseStream
from tests.bridge.helpers import assert_spec_stream, assert_valid_stream, counter_ids, types


def queued_stream(**request: Any) -> tuple[ResponseStream, list[dict[str, Any]]]:
    stream = ResponseStream(model="m", request={"background": True, **request}, new_id=counter_ids())
    return stream, stream.queue()


def test_a_background_stream_opens_queued_then_goes_in_progress_once() -> None:
    stream, events = queued_stream()
    assert types(events) == ["response.created", "response.queued"]
    assert {e["response"]["status"] for e in events} == {"queued"}
    assert events[0]["response"]["background"] is True
    events += stream.start()
    events += stream.feed(TextDelta(text="hi")) + stream.feed(Finished(reason="stop")) + stream.finish()
    assert types(events)[2] == "response.in_progress"
    assert types(events).count("response.created") == 1
    assert_valid_stream(events)


def test_a_stream_carried_on_from_another_queuer_continues_its_sequence_and_id() -> None:
    queuer, opening = queued_stream()
    answerer = ResponseStream(model="m", request={"background": True}, response_id=opening[0]["response"]["id"])
    answerer.queued_as(opening)
    events = [*opening, *answerer.start(), *answerer.feed(TextDelta(text="hi")),
              *answerer.feed(Finished(reason="stop")), *answerer.finish()]
    assert_valid_stream(events)
    with pytest.raises(BridgeStateError):
        answerer.queued_as(opening)


@pytest.mark.parametrize("started", [False, True], ids=["while-queued", "mid-answer"])
def test_cancel_closes_open_items_and_ends_with_failed_saying_cancelled(started: bool) -> None:
    stream, events = queued_stream()
    if started:
        events += stream.start() + stream.feed(TextDelta(text="par"))
        events += stream.feed(ToolCallDelta(index=0, call_id="call_1", name="f", arguments="{"))
    events += stream.cancel()
    assert stream.phase is Phase.CANCELLED
    final = events[-1]
    assert final["type"] == "response.failed"
    assert (final["response"]["status"], final["response"]["error"]) == ("cancelled", None)
    assert_valid_stream(events)
    assert_spec_stream(events)
    with pytest.raises(BridgeStateError):
        stream.cancel()


@pytest.mark.parametrize(("starting_after", "expected"), [(None, [0, 1, 2, 3]), (1, [2, 3]), (3, []), (9, [])])
def test_after_keeps_the_events_past_a_sequence_number(starting_after: int | None, expected: list[int]) -> None:
    events = [{"type": "x", "sequence_number": n} for n in range(4)]
    assert [e["sequence_number"] for e in background.after(events, starting_after)] == expected


def test_relayed_events_become_the_background_responses_own() -> None:
    _, opening = queued_stream(store=True)
    relayed = background.RelayedEvents(opening, {"background": True, "previous_response_id": "resp_0"})
    upstream = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_up", "status": "in_progress"}},
        {"type": "response.in_progress", "response": {"id": "resp_up", "status": "in_progress"}},  # no number
        {"type": "response.output_text.delta", "sequence_number": 7, "delta": "hi"},
        {"type": "response.completed", "sequence_number": 8, "response": {"id": "resp_up", "status": "completed"}},
    ]
    taken = [event for event in (relayed.take(e) for e in upstream) if event is not None]
    assert [e["sequence_number"] for e in taken] == [2, 3, 4]  # after the gateway's own two
    assert {e["response"]["id"] for e in taken if "response" in e} == {opening[0]["response"]["id"]}
    assert taken[-1]["response"]["previous_response_id"] == "resp_0"
    assert taken[-1]["response"]["tools"] == []  # a field the upstream left out keeps the gateway's value
    assert relayed.done


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_a_relayed_stream_that_breaks_or_is_cancelled_ends_after_what_came(end: str) -> None:
    _, opening = queued_stream()
    relayed = background.RelayedEvents(opening, {})
    relayed.take({"type": "response.in_progress", "response": {"status": "in_progress"}})
    last = relayed.failed("upstream_error", "gone") if end == "failed" else relayed.cancelled()
    assert (last["type"], last["sequence_number"], last["response"]["status"]) == ("response.failed", 3, end)


@pytest.mark.parametrize(("status", "kind"), [("completed", "response.completed"), ("failed", "response.failed"),
                                              ("incomplete", "response.incomplete"),
                                              ("cancelled", "response.failed")])
def test_the_ending_of_a_response_whose_events_were_not_kept(status: str, kind: str) -> None:
    event = background.ending({"status": status}, 5)
    assert (event["type"], event["sequence_number"]) == (kind, 5)


@pytest.mark.parametrize(("body", "expected"), [({}, False), ({"background": False}, False),
                                                ({"background": True}, True),
                                                ({"background": True, "store": True}, True)])
def test_wants_background(body: dict[str, Any], expected: bool) -> None:
    assert wants_background(body) is expected


@pytest.mark.parametrize(("body", "param"), [({"background": 1}, "background"),
                                             ({"background": True, "store": False}, "store")])
def test_wants_background_refuses_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        wants_background(body)
    assert refused.value.param == param
