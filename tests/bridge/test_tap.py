"""The passthrough tap (bridge/tap.py): what it reads from a relayed body, and the trailer that ends a broken stream.

Pure: bytes in, attributes out; no server and no event loop. The streams below are what
a Chat or Responses upstream sends, framed as they frame them.
"""
from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.dialects.base import Wire
from bridge.dialects.chat.answer import read_usage as read_chat_usage
from bridge.events import UsageReported
from bridge.response import read_responses_usage
from bridge.tap import StreamTap, failure_trailer

# --- what upstreams send ----------------------------------------------------------------------------

CHAT_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
              "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}
CHAT_USAGE_EVENT = UsageReported(input_tokens=11, output_tokens=7, total_tokens=18, cached_tokens=4,
                                 reasoning_tokens=2)


def chat_chunk(delta: dict[str, Any] | None = None, *, index: int = 0, finish_reason: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """Return one Chat Completions stream chunk with one choice."""
    choice = {"index": index, "delta": delta or {}, "finish_reason": finish_reason}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": [choice], **extra}


def call_fragment(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Return the ``tool_calls`` delta of one fragment of the call at ``index``."""
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return {"tool_calls": [fragment]}


# Text, then three calls: two of choice 0 (the first in two fragments), one of choice 1,
# then the finish and the usage on a trailing chunk with no choices, then [DONE].
CHAT_STREAM: list[dict[str, Any] | str] = [
    chat_chunk({"role": "assistant", "content": "Let me "}),
    chat_chunk({"content": "看一下。"}),
    chat_chunk(call_fragment(0, '{"path": ', "call_a", "read_file")),
    chat_chunk(call_fragment(0, '"a.py"}')),
    chat_chunk(call_fragment(1, "{}", "call_b", "list_dir")),
    chat_chunk(call_fragment(0, "{}", "call_c", "list_dir"), index=1),
    chat_chunk(finish_reason="tool_calls"),
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": [], "usage": CHAT_USAGE},
    "[DONE]",
]

CHAT_BODY = {
    "id": "chatcmpl-2", "object": "chat.completion", "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": "{}"}},
                       {"id": "call_b", "type": "function", "function": {"name": "list_dir", "arguments": "{}"}}]}}],
    "usage": CHAT_USAGE,
}

RESPONSES_USAGE = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 9,
                   "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 29}
RESPONSES_USAGE_EVENT = UsageReported(input_tokens=20, output_tokens=9, total_tokens=29, cached_tokens=3,
                                      reasoning_tokens=5)
RESPONSE = {"id": "resp_abc", "object": "response", "model": "gpt-upstream", "output": [], "usage": None}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant",
           "content": [{"type": "output_text", "text": "看一下。", "annotations": []}]}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_a", "name": "read_file", "arguments": "{}"}
CUSTOM_CALL = {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_b", "name": "apply_patch", "input": "x"}


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


# Items are counted when done, not when added: each call below is added and done once.
RESPONSES_STREAM = numbered([
    {"type": "response.created", "response": {**RESPONSE, "status": "in_progress"}},
    {"type": "response.in_progress", "response": {**RESPONSE, "status": "in_progress"}},
    {"type": "response.output_item.added", "output_index": 0, "item": MESSAGE},
    {"type": "response.output_text.delta", "output_index": 0, "item_id": "msg_1", "delta": "看一下。"},
    {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
    {"type": "response.output_item.added", "output_index": 1, "item": {**CALL, "arguments": ""}},
    {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "{}"},
    {"type": "response.output_item.done", "output_index": 1, "item": CALL},
    {"type": "response.output_item.added", "output_index": 2, "item": CUSTOM_CALL},
    {"type": "response.output_item.done", "output_index": 2, "item": CUSTOM_CALL},
    {"type": "response.completed", "response": {**RESPONSE, "status": "completed", "output": [MESSAGE, CALL,
                                                                                            CUSTOM_CALL],
                                                "usage": RESPONSES_USAGE}},
])

RESPONSES_BODY = {**RESPONSE, "id": "resp_body", "status": "completed", "usage": RESPONSES_USAGE,
                  "output": [{"id": "rs_1", "type": "reasoning", "summary": []}, MESSAGE, CALL,
                             {"id": "lsc_1", "type": "local_shell_call", "call_id": "call_c"}]}


def chat_sse(chunks: list[dict[str, Any] | str], newline: bytes = b"\n") -> bytes:
    """Frame chunks as a Chat upstream does: ``data:`` lines only."""
    frames = [b"data: " + (c.encode() if isinstance(c, str) else orjson.dumps(c)) for c in chunks]
    return b"".join(frame + newline * 2 for frame in frames)


def responses_sse(events: list[dict[str, Any]], newline: bytes = b"\n") -> bytes:
    """Frame events as a Responses upstream does: an ``event:`` line, then the ``data:`` line."""
    return b"".join(b"event: " + e["type"].encode() + newline + b"data: " + orjson.dumps(e) + newline * 2
                    for e in events)


def tapped(api: Wire, body: bytes, *, sse: bool, pieces: list[bytes] | None = None) -> StreamTap:
    """Return a tap that watched ``body`` go by (as ``pieces`` if given) and was closed."""
    tap = StreamTap(api, sse=sse)
    for piece in pieces if pieces is not None else [body]:
        tap.feed(piece)
    tap.close()
    return tap


def seen(tap: StreamTap) -> dict[str, Any]:
    """Return everything a tap reports, to compare two taps at once."""
    return {"usage": tap.usage, "tool_calls": tap.tool_calls, "complete": tap.complete, "error": tap.error,
            "response_id": tap.response_id, "model": tap.model, "sequence_number": tap.sequence_number}


# --- Chat Completions, streamed ---------------------------------------------------------------------


def test_tap_reads_the_usage_of_a_chat_stream_from_its_trailing_chunk() -> None:
    """The usage chunk has no choices; its counts become the same UsageReported the bridge's reader gives."""
    tap = tapped("chat", chat_sse(CHAT_STREAM), sse=True)
    assert tap.usage == CHAT_USAGE_EVENT
    assert tap.usage == read_chat_usage(CHAT_USAGE)


def test_tap_counts_chat_tool_calls_once_each_across_fragments_and_choices() -> None:
    """Fragments of one call share its index; the same index in another choice is another call."""
    tap = tapped("chat", chat_sse(CHAT_STREAM), sse=True)
    assert tap.tool_calls == 3


def test_tap_sees_a_plain_chat_text_stream_end_with_no_calls_and_no_usage() -> None:
    """A stream of text that reports no usage leaves the usage unknown, not zero."""
    chunks: list[dict[str, Any] | str] = [chat_chunk({"content": "Hello"}), chat_chunk({"content": " world"}),
                                          chat_chunk(finish_reason="stop"), "[DONE]"]
    tap = tapped("chat", chat_sse(chunks), sse=True)
    assert (tap.complete, tap.tool_calls, tap.usage, tap.error) == (True, 0, None, None)


@pytest.mark.parametrize(("chunks", "complete"), [
    pytest.param([chat_chunk({"content": "hi"}), chat_chunk(finish_reason="stop")], True, id="finish-reason-alone"),
    pytest.param([chat_chunk({"content": "hi"}), "[DONE]"], True, id="done-alone"),
    pytest.param([chat_chunk({"content": "hi"}), chat_chunk({"content": "!"})], False, id="neither"),
    pytest.param([chat_chunk({"content": "hi"}, finish_reason="")], False, id="empty-finish-reason"),
])
def test_tap_takes_a_finish_reason_or_done_as_the_end_of_a_chat_stream(chunks: list[dict[str, Any] | str],
                                                                       complete: bool) -> None:
    """Either marker ends the answer (servers send one, the other or both); text alone never does."""
    assert tapped("chat", chat_sse(chunks), sse=True).complete is complete


def test_tap_keeps_the_error_a_chat_stream_reports() -> None:
    """An upstream that fails mid-stream says so in an ``{"error": ...}`` chunk: the relay reports it."""
    error = {"message": "The model is overloaded.", "type": "server_error", "param": None, "code": "overloaded"}
    tap = tapped("chat", chat_sse([chat_chunk({"content": "hi"}), {"error": error}, "[DONE]"]), sse=True)
    assert tap.error == error


def test_tap_leaves_the_error_unset_for_a_chat_stream_that_reports_none() -> None:
    assert tapped("chat", chat_sse(CHAT_STREAM), sse=True).error is None


# --- Chat Completions, one JSON body ----------------------------------------------------------------


def test_tap_reads_a_whole_chat_answer_as_complete_with_its_usage_and_message_calls() -> None:
    """A JSON answer's calls are in ``message`` (not ``delta``) and have no index: each one counts."""
    tap = tapped("chat", orjson.dumps(CHAT_BODY), sse=False)
    assert (tap.complete, tap.usage, tap.tool_calls, tap.error) == (True, CHAT_USAGE_EVENT, 2, None)


def test_tap_reads_a_chat_error_body_as_its_error() -> None:
    error = {"message": "bad request", "type": "invalid_request_error", "param": None, "code": None}
    assert tapped("chat", orjson.dumps({"error": error}), sse=False).error == error


def test_tap_reads_nothing_until_a_json_body_is_closed() -> None:
    """A JSON body is read whole: until the upstream's body ends, nothing is known of it."""
    tap = StreamTap("chat", sse=False)
    tap.feed(orjson.dumps(CHAT_BODY))
    assert (tap.complete, tap.usage, tap.tool_calls) == (False, None, 0)
    tap.close()
    assert (tap.complete, tap.usage, tap.tool_calls) == (True, CHAT_USAGE_EVENT, 2)


# --- Responses, streamed ----------------------------------------------------------------------------


def test_tap_follows_a_responses_stream_id_model_and_sequence_numbers() -> None:
    tap = tapped("responses", responses_sse(RESPONSES_STREAM), sse=True)
    assert (tap.response_id, tap.model) == ("resp_abc", "gpt-upstream")
    assert tap.sequence_number == RESPONSES_STREAM[-1]["sequence_number"] == 10


def test_tap_reads_the_usage_of_a_responses_stream_from_response_completed() -> None:
    tap = tapped("responses", responses_sse(RESPONSES_STREAM), sse=True)
    assert tap.usage == RESPONSES_USAGE_EVENT
    assert tap.usage == read_responses_usage(RESPONSES_USAGE)


def test_tap_counts_the_calls_of_a_responses_stream_as_their_items_are_done() -> None:
    """A function call and a custom tool call count; the message does not, nor does an item merely added."""
    tap = tapped("responses", responses_sse(RESPONSES_STREAM), sse=True)
    assert (tap.tool_calls, tap.complete) == (2, True)


def test_tap_does_not_count_a_responses_call_that_was_added_but_never_done() -> None:
    """A stream cut while a call's arguments were still coming made no call."""
    tap = tapped("responses", responses_sse(RESPONSES_STREAM[:7]), sse=True)
    assert (tap.tool_calls, tap.complete) == (0, False)


@pytest.mark.parametrize(("last", "complete"), [
    pytest.param({"type": "response.completed", "response": {**RESPONSE, "status": "completed"}}, True,
                 id="completed"),
    pytest.param({"type": "response.incomplete", "response": {**RESPONSE, "status": "incomplete"}}, True,
                 id="incomplete"),
    pytest.param({"type": "response.failed", "response": {**RESPONSE, "status": "failed"}}, True, id="failed"),
    pytest.param({"type": "error", "code": "server_error", "message": "boom"}, True, id="error"),
    pytest.param({"type": "response.output_text.done", "output_index": 0, "item_id": "msg_1", "text": "hi"}, False,
                 id="no-terminal-event"),
])
def test_tap_takes_only_a_terminal_event_as_the_end_of_a_responses_stream(last: dict[str, Any],
                                                                          complete: bool) -> None:
    events = numbered([RESPONSES_STREAM[0], last])
    assert tapped("responses", responses_sse(events), sse=True).complete is complete


# --- Responses, one JSON body -----------------------------------------------------------------------


def test_tap_reads_a_whole_responses_answer() -> None:
    """Id, model, usage and the calls among the output items (``*_call`` types) of a non-streamed answer."""
    tap = tapped("responses", orjson.dumps(RESPONSES_BODY), sse=False)
    assert seen(tap) == {"usage": RESPONSES_USAGE_EVENT, "tool_calls": 2, "complete": True, "error": None,
                         "response_id": "resp_body", "model": "gpt-upstream", "sequence_number": -1}


@pytest.mark.parametrize(("usage", "expected"), [
    pytest.param(RESPONSES_USAGE, RESPONSES_USAGE_EVENT, id="full"),
    pytest.param({"input_tokens": 4, "output_tokens": 6}, UsageReported(input_tokens=4, output_tokens=6,
                                                                        total_tokens=10), id="no-total-no-details"),
    pytest.param({"input_tokens": True, "output_tokens": None}, None, id="no-integer-counts"),
    pytest.param(None, None, id="none"),
])
def test_tap_reads_responses_usage_strictly(usage: Any, expected: UsageReported | None) -> None:
    """A missing total is the sum; details not reported stay unknown; booleans are not counts."""
    assert read_responses_usage(usage) == expected


# --- a stream cut short, and how it is split --------------------------------------------------------


def cut_before_the_end(frames: list[bytes], first_terminal: int) -> bytes:
    """Return the frames before ``first_terminal`` and half of that one: a connection that dropped there."""
    return b"".join(frames[:first_terminal]) + frames[first_terminal][: len(frames[first_terminal]) // 2]


@pytest.mark.parametrize(("api", "body"), [
    pytest.param("chat", cut_before_the_end([chat_sse([c]) for c in CHAT_STREAM], 6), id="chat"),
    pytest.param("responses", cut_before_the_end([responses_sse([e]) for e in RESPONSES_STREAM], 10),
                 id="responses"),
    pytest.param("responses", responses_sse(RESPONSES_STREAM[:10]), id="responses-between-frames"),
])
def test_tap_does_not_take_a_stream_cut_before_its_end_as_complete(api: Wire, body: bytes) -> None:
    """The relay tells the client when the upstream stopped early; a half frame is no end either."""
    assert tapped(api, body, sse=True).complete is False


@pytest.mark.parametrize(("api", "body"), [
    pytest.param("chat", orjson.dumps(CHAT_BODY)[:-7], id="chat"),
    pytest.param("responses", orjson.dumps(RESPONSES_BODY)[:-7], id="responses"),
])
def test_tap_does_not_take_a_cut_json_body_as_complete(api: Wire, body: bytes) -> None:
    tap = tapped(api, body, sse=False)
    assert (tap.complete, tap.usage, tap.tool_calls) == (False, None, 0)


BODIES = [
    pytest.param("chat", chat_sse(CHAT_STREAM), True, id="chat-sse"),
    pytest.param("chat", chat_sse(CHAT_STREAM, b"\r\n"), True, id="chat-sse-crlf"),
    pytest.param("chat", orjson.dumps(CHAT_BODY), False, id="chat-json"),
    pytest.param("responses", responses_sse(RESPONSES_STREAM), True, id="responses-sse"),
    pytest.param("responses", responses_sse(RESPONSES_STREAM, b"\r\n"), True, id="responses-sse-crlf"),
    pytest.param("responses", orjson.dumps(RESPONSES_BODY), False, id="responses-json"),
]


@pytest.mark.parametrize(("api", "body", "sse"), BODIES)
def test_tap_reads_the_same_whatever_byte_a_read_ends_on(api: Wire, body: bytes, sse: bool) -> None:
    """Network reads split anywhere (inside a frame, a CRLF, a UTF-8 character): two reads give what one gives."""
    whole = seen(tapped(api, body, sse=sse))
    assert whole["complete"] and whole["usage"] is not None and whole["tool_calls"] > 0  # the streams say something
    for cut in range(1, len(body)):
        assert seen(tapped(api, body, sse=sse, pieces=[body[:cut], body[cut:]])) == whole, f"split at byte {cut}"


@pytest.mark.parametrize(("api", "body", "sse"), BODIES)
def test_tap_reads_the_same_fed_one_byte_at_a_time(api: Wire, body: bytes, sse: bool) -> None:
    whole = seen(tapped(api, body, sse=sse))
    assert seen(tapped(api, body, sse=sse, pieces=[body[i:i + 1] for i in range(len(body))])) == whole


# --- the trailer of a broken stream -----------------------------------------------------------------


def test_tap_trailer_of_a_chat_stream_is_exactly_an_openai_error_chunk() -> None:
    tap = StreamTap("chat", sse=True)
    tap.feed(chat_sse(CHAT_STREAM[:3]))
    trailer = failure_trailer(tap, "upstream_timeout", "The upstream went quiet.")
    assert trailer == (b'data: {"error":{"message":"The upstream went quiet.","type":"upstream_error",'
                       b'"param":null,"code":"upstream_timeout"}}\n\n')


def test_tap_trailer_of_a_chat_stream_reads_back_as_the_error_it_reports() -> None:
    """What the client's reader sees after the cut stream is an error chunk, the one the tap itself recognises."""
    cut = chat_sse(CHAT_STREAM[:3])
    tap = StreamTap("chat", sse=True)
    tap.feed(cut)
    trailer = failure_trailer(tap, "upstream_protocol_error", "The upstream stream ended early.")
    client = tapped("chat", cut + trailer, sse=True)
    assert client.error == {"message": "The upstream stream ended early.", "type": "upstream_error", "param": None,
                            "code": "upstream_protocol_error"}


def parse_event_frame(frame: bytes) -> tuple[bytes, dict[str, Any]]:
    """Return the ``event:`` name and the JSON ``data`` of one SSE frame (which must end the frame)."""
    assert frame.endswith(b"\n\n") and frame.count(b"\n\n") == 1
    event_line, data_line = frame[:-2].split(b"\n")
    assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
    return event_line.removeprefix(b"event: "), orjson.loads(data_line.removeprefix(b"data: "))


def frames(raw: bytes) -> list[tuple[bytes, dict[str, Any]]]:
    return [parse_event_frame(frame + b"\n\n") for frame in raw.split(b"\n\n") if frame]


def test_tap_trailer_of_a_responses_stream_fails_the_upstream_response_where_it_stopped() -> None:
    """The open item is closed (incomplete), then ``response.failed``: both numbered on from the upstream's."""
    tap = StreamTap("responses", sse=True)
    tap.feed(responses_sse(RESPONSES_STREAM[:7]))  # the function call at output_index 1 is open
    (closing, done), (name, event) = frames(failure_trailer(tap, "upstream_protocol_error", "The stream broke off."))
    assert closing == b"response.output_item.done"
    assert (done["sequence_number"], done["output_index"]) == (RESPONSES_STREAM[6]["sequence_number"] + 1, 1)
    assert done["item"] == {**CALL, "arguments": "", "status": "incomplete"}
    assert name == b"response.failed" and event["type"] == "response.failed"
    assert event["sequence_number"] == 8
    response = event["response"]
    assert (response["id"], response["model"], response["status"]) == ("resp_abc", "gpt-upstream", "failed")
    assert response["error"] == {"code": "upstream_protocol_error", "message": "The stream broke off."}
    assert response["output"] == [done["item"]]


def test_tap_trailer_numbers_on_from_an_upstream_that_numbers_nothing() -> None:
    """llama.cpp's events carry no sequence_number: the failure comes after them, not at 0."""
    unnumbered = [{k: v for k, v in event.items() if k != "sequence_number"} for event in RESPONSES_STREAM[:5]]
    tap = StreamTap("responses", sse=True)
    tap.feed(responses_sse(unnumbered))
    [(name, event)] = frames(failure_trailer(tap, "upstream_timeout", "quiet"))  # the message item was done
    assert name == b"response.failed" and event["sequence_number"] == 5


def test_tap_trailer_of_a_responses_stream_makes_the_stream_complete_for_its_reader() -> None:
    """Upstream bytes plus the trailer are one well-formed stream: numbered on, and ended by a terminal event."""
    cut = responses_sse(RESPONSES_STREAM[:4])
    tap = StreamTap("responses", sse=True)
    tap.feed(cut)
    client = tapped("responses", cut + failure_trailer(tap, "upstream_timeout", "quiet"), sse=True)
    assert (client.complete, client.sequence_number, client.response_id) == (True, 5, "resp_abc")
    assert client.open_items == {}


def test_tap_trailer_of_a_responses_stream_that_sent_nothing_starts_the_numbering() -> None:
    """Before any upstream event there is no id to continue: the failure still reads as a Response."""
    _, event = parse_event_frame(failure_trailer(StreamTap("responses", sse=True), "upstream_timeout", "quiet"))
    assert event["sequence_number"] == 0
    assert event["response"]["status"] == "failed" and event["response"]["id"]


# --- heartbeats in a relayed stream -------------------------------------------------------------------


def relayed_with_heartbeats(events: list[dict[str, Any]], pauses: set[int]) -> bytes:
    """Return what a client is sent for ``events`` relayed with a heartbeat after each event numbered in ``pauses``."""
    tap, sent = StreamTap("responses", sse=True), b""
    for event in events:
        data = responses_sse([event])
        sent += tap.shifted(data) if tap.inserted else (tap.feed(data) or data)
        if event["sequence_number"] in pauses:
            sent += tap.heartbeat()
    return sent + tap.close()


def test_tap_heartbeat_in_a_responses_stream_is_an_in_progress_and_renumbers_what_follows() -> None:
    """The client reads one stream numbered 0..n: the upstream's events after a heartbeat move up by one each."""
    sent = relayed_with_heartbeats(RESPONSES_STREAM, {3, 6})
    received = [event for _, event in frames(sent)]
    assert [e["sequence_number"] for e in received] == list(range(len(RESPONSES_STREAM) + 2))
    beats = [e for e in received if e["type"] == "response.in_progress"][1:]
    assert [b["sequence_number"] for b in beats] == [4, 8]
    assert all(b["response"]["id"] == "resp_abc" and b["response"]["status"] == "in_progress" for b in beats)
    upstream = [e for e in received if e not in beats]
    assert [{**e, "sequence_number": 0} for e in upstream] == [{**e, "sequence_number": 0} for e in RESPONSES_STREAM]
    client = tapped("responses", sent, sse=True)
    assert (client.complete, client.usage, client.tool_calls) == (True, RESPONSES_USAGE_EVENT, 2)


def test_tap_heartbeat_goes_only_between_events() -> None:
    """Half an event read: nothing may go in (b""); once the event is whole, the heartbeat may."""
    whole = responses_sse(RESPONSES_STREAM[:3])
    tap = StreamTap("responses", sse=True)
    tap.feed(whole[:-1])
    assert tap.heartbeat() == b""
    tap.feed(whole[-1:])
    assert tap.heartbeat().startswith(b"event: response.in_progress\n")


def test_tap_heartbeat_is_a_comment_in_a_chat_stream_or_before_the_response_is_shown() -> None:
    """A Chat stream has no event to spare, nor a Responses stream that showed no Response yet: a comment."""
    chat = StreamTap("chat", sse=True)
    chat.feed(chat_sse(CHAT_STREAM[:2]))
    assert chat.heartbeat() == b": keep-alive\n\n"
    assert StreamTap("responses", sse=True).heartbeat() == b": keep-alive\n\n"
    assert chat.inserted == 0
    done = tapped("chat", chat_sse(CHAT_STREAM), sse=True)
    assert done.heartbeat() == b""  # ended: nothing more is sent
    assert StreamTap("responses", sse=False).heartbeat() == b""  # a JSON body has no room for one


def test_tap_trailer_after_heartbeats_numbers_on_from_them() -> None:
    """A stream that paused, then broke: the failure is numbered after the heartbeat too."""
    tap = StreamTap("responses", sse=True)
    tap.feed(responses_sse(RESPONSES_STREAM[:5]))
    [(_, beat)] = frames(tap.heartbeat())
    [(_, failed)] = frames(failure_trailer(tap, "upstream_timeout", "quiet"))
    assert failed["sequence_number"] == beat["sequence_number"] + 1 == 6


def test_tap_shifted_stream_sends_a_last_event_that_lost_its_blank_line() -> None:
    """After a heartbeat only whole events go out: an upstream that ends without a blank line is not cut short."""
    tap = StreamTap("responses", sse=True)
    tap.feed(responses_sse(RESPONSES_STREAM[:2]))
    tap.heartbeat()
    held = tap.shifted(responses_sse(RESPONSES_STREAM[2:])[:-2])
    tail = tap.close()
    received = [event for _, event in frames(held + tail)]
    assert received[-1]["type"] == "response.completed" and received[-1]["sequence_number"] == 11
