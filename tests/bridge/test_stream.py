"""Tests for bridge.stream: UpstreamEvents in, the canonical Responses sequence out (docs/responses-bridge.md §3)."""
from __future__ import annotations

import json
import re

import pytest

from bridge.dialects.chat.answer import read_chunk
from bridge.events import Finished, ReasoningDelta, TextDelta, ToolCallDelta, ToolTarget, UpstreamFailed, UsageReported
from bridge.stream import BridgeStateError, Phase, ResponseStream
from tests.bridge.helpers import assert_valid_stream, counter_ids, done_items, run, types


def text(value: str) -> TextDelta:
    return TextDelta(text=value)


def think(value: str) -> ReasoningDelta:
    return ReasoningDelta(text=value)


def call(index: int, arguments: str = "", *, call_id: str | None = None, name: str | None = None) -> ToolCallDelta:
    return ToolCallDelta(index=index, call_id=call_id, name=name, arguments=arguments)


def finish(reason: str | None = "stop") -> Finished:
    return Finished(reason=reason)


START = ["response.created", "response.in_progress"]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_CLOSE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
REASONING_OPEN = ["response.output_item.added", "response.reasoning_summary_part.added"]
REASONING_CLOSE = [
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]
FUNCTION_CLOSE = ["response.function_call_arguments.done", "response.output_item.done"]
TEXT_DELTA = "response.output_text.delta"
ARGS_DELTA = "response.function_call_arguments.delta"

SEQUENCES = [
    pytest.param(
        [text("Hello"), text(" world"), text("! 你好世界！"), finish("stop")],
        [*START, *MESSAGE_OPEN, TEXT_DELTA, TEXT_DELTA, TEXT_DELTA, *MESSAGE_CLOSE, "response.completed"],
        id="e1-text",
    ),
    pytest.param([finish("stop")], [*START, "response.completed"], id="empty-answer"),
    pytest.param(
        [text("Hel"), finish("length")],
        [*START, *MESSAGE_OPEN, TEXT_DELTA, *MESSAGE_CLOSE, "response.incomplete"],
        id="length-is-incomplete",
    ),
    pytest.param([text("Hel")], [*START, *MESSAGE_OPEN, TEXT_DELTA, *MESSAGE_CLOSE, "response.failed"], id="no-finish"),
    pytest.param(
        [think("hmm"), think("..."), text("Hi"), finish()],
        [
            *START,
            *REASONING_OPEN,
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            *REASONING_CLOSE,
            *MESSAGE_OPEN,
            TEXT_DELTA,
            *MESSAGE_CLOSE,
            "response.completed",
        ],
        id="reasoning-then-text",
    ),
    pytest.param(
        [text("Let me look."), call(0, '{"a":', call_id="call_1", name="f"), call(0, "1}"), finish("tool_calls")],
        [
            *START,
            *MESSAGE_OPEN,
            TEXT_DELTA,
            *MESSAGE_CLOSE,
            "response.output_item.added",
            ARGS_DELTA,
            ARGS_DELTA,
            *FUNCTION_CLOSE,
            "response.completed",
        ],
        id="text-then-call",
    ),
    pytest.param(
        [call(0, "{}", call_id="call_1", name="f"), text("Done."), finish("tool_calls")],
        [
            *START,
            "response.output_item.added",
            ARGS_DELTA,
            *MESSAGE_OPEN,
            TEXT_DELTA,
            *MESSAGE_CLOSE,
            *FUNCTION_CLOSE,
            "response.completed",
        ],
        id="text-after-call-opens-a-new-message",
    ),
    pytest.param(
        [call(0, '{"a":', call_id="call_1", name="f"), text("x"), call(0, "1}"), text("y"), finish("tool_calls")],
        [
            *START,
            "response.output_item.added",
            ARGS_DELTA,
            *MESSAGE_OPEN,
            TEXT_DELTA,
            ARGS_DELTA,
            TEXT_DELTA,
            *MESSAGE_CLOSE,
            *FUNCTION_CLOSE,
            "response.completed",
        ],
        id="late-fragment-of-a-known-call-keeps-the-message-open",
    ),
    pytest.param(
        [text("a"), think("b"), text("c"), finish()],
        [*START, *MESSAGE_OPEN, TEXT_DELTA, *MESSAGE_CLOSE, *REASONING_OPEN, "response.reasoning_summary_text.delta",
         *REASONING_CLOSE, *MESSAGE_OPEN, TEXT_DELTA, *MESSAGE_CLOSE, "response.completed"],
        id="reasoning-after-text-closes-the-message",
    ),
]


@pytest.mark.parametrize(("chat_events", "expected"), SEQUENCES)
def test_stream_emits_the_canonical_sequence(chat_events: list, expected: list[str]) -> None:
    """Each upstream story becomes exactly the event sequence the official API sends."""
    _, events = run(chat_events)
    assert types(events) == expected
    assert_valid_stream(events)


E1_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "! 你好世界！"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


def test_stream_e1_text_reaches_the_client_whole() -> None:
    """E1: three chunks become three deltas and one finished message with the whole text."""
    stream, events = run(event for chunk in E1_CHUNKS for event in read_chunk(chunk))
    assert [e["delta"] for e in events if e["type"] == TEXT_DELTA] == ["Hello", " world", "! 你好世界！"]
    [message] = done_items(events)
    assert message["content"] == [{"type": "output_text", "text": "Hello world! 你好世界！", "annotations": []}]
    assert message["status"] == "completed"
    assert events[-1]["response"]["status"] == "completed"
    assert stream.phase is Phase.COMPLETED


def test_stream_empty_answer_completes_with_no_output() -> None:
    """An answer with only finish_reason stop is a completed response whose output is empty."""
    stream, events = run([finish("stop")])
    assert events[-1]["response"]["output"] == []
    assert stream.response["status"] == "completed"


BIG = "".join(chr(ord("a") + i % 26) for i in range(9_999)) + "界"


def test_stream_passes_a_10000_character_delta_intact() -> None:
    """One huge delta is neither split nor trimmed."""
    _, events = run([text(BIG), finish()])
    [delta] = [e["delta"] for e in events if e["type"] == TEXT_DELTA]
    assert delta == BIG
    assert done_items(events)[0]["content"][0]["text"] == BIG


E2_ARGS_0 = '{"files":[{"path":"test.js","content":"console.log(\'Hello World\')"}]}'
E2_ARGS_1 = '{"command":"ls -la /tmp"}'


def pieces(value: str, n: int) -> list[str]:
    size = -(-len(value) // n)
    return [value[i : i + size] for i in range(0, len(value), size)]


def e2_events() -> list[ToolCallDelta | Finished]:
    a, b = pieces(E2_ARGS_0, 3), pieces(E2_ARGS_1, 3)
    return [
        call(0, "", call_id="call_apply_123", name="apply_patch"),
        call(1, "", call_id="call_shell_456", name="local_shell"),
        call(0, a[0]), call(1, b[0]), call(0, a[1]), call(1, b[1]), call(0, a[2]), call(1, b[2]),
        finish("tool_calls"),
    ]


def test_stream_e2_interleaved_calls_keep_their_own_arguments() -> None:
    """E2: two calls whose fragments interleave come back whole, each with its call_id."""
    _, events = run(e2_events())
    assert_valid_stream(events)
    calls = done_items(events)
    assert [(c["type"], c["name"], c["call_id"], c["arguments"]) for c in calls] == [
        ("function_call", "apply_patch", "call_apply_123", E2_ARGS_0),
        ("function_call", "local_shell", "call_shell_456", E2_ARGS_1),
    ]
    assert json.loads(calls[0]["arguments"]) == {
        "files": [{"path": "test.js", "content": "console.log('Hello World')"}]
    }
    assert json.loads(calls[1]["arguments"]) == {"command": "ls -la /tmp"}
    assert events[-1]["type"] == "response.completed"


FIVE_TOOLS = [
    ("read_file", "call_read", '{"path":"/etc/hosts"}', 3),
    ("write_file", "call_write", '{"path":"out.txt","content":"line 1\\nline 2 ünïcode"}', 4),
    ("shell", "call_shell", '{"command":["bash","-lc","echo hi && ls"]}', 5),
    ("web_search", "call_search", '{"query":"python 3.11 release notes"}', 3),
    ("apply_patch", "call_patch", '{"input":"*** Begin Patch\\n*** Add File: a.txt\\n+hello\\n*** End Patch"}', 4),
]


def five_tool_events() -> list[ToolCallDelta | Finished]:
    fragments = {i: pieces(args, n) for i, (_, _, args, n) in enumerate(FIVE_TOOLS)}
    chat_events = [call(i, "", call_id=cid, name=name) for i, (name, cid, _, _) in enumerate(FIVE_TOOLS)]
    for round_ in range(5):
        chat_events += [call(i, parts[round_]) for i, parts in fragments.items() if round_ < len(parts)]
    return [*chat_events, finish("tool_calls")]


def test_stream_five_interleaved_calls_do_not_pollute_each_other() -> None:
    """E2 stress: five calls, 3-5 fragments each, round-robin, come back exact and in index order."""
    stream, events = run(five_tool_events())
    assert_valid_stream(events)
    assert [(c["name"], c["call_id"], c["arguments"]) for c in done_items(events)] == [
        (name, cid, args) for name, cid, args, _ in FIVE_TOOLS
    ]
    for index, item in enumerate(done_items(events)):
        deltas = [e["delta"] for e in events if e["type"] == ARGS_DELTA and e["output_index"] == index]
        assert "".join(deltas) == item["arguments"]
    assert stream.tool_call_count == 5


def test_stream_emits_one_item_at_a_time_however_the_upstream_interleaves() -> None:
    """As the OpenAI API streams: once an item is added, no event goes to an earlier one; the first call is live."""
    _, events = run(five_tool_events())
    indexes = [e["output_index"] for e in events if "output_index" in e]
    assert indexes == sorted(indexes)  # never back to an earlier item
    for index in range(5):
        of_item = [e["type"] for e in events if e.get("output_index") == index]
        assert of_item[0] == "response.output_item.added" and of_item[-1] == "response.output_item.done"
    first_done = next(n for n, e in enumerate(events) if e["type"] == "response.output_item.done")
    live = [e for e in events[:first_done] if e["type"] == ARGS_DELTA]
    assert len(live) > 1  # the first call streamed as it came, fragment by fragment


SHORT_FINISHES = [
    pytest.param("length", "max_output_tokens", id="length"),
    pytest.param("content_filter", "content_filter", id="content-filter"),
]


@pytest.mark.parametrize(("reason", "detail"), SHORT_FINISHES)
def test_stream_short_finish_is_incomplete(reason: str, detail: str) -> None:
    """`length` and `content_filter` end the response as incomplete, with the reason and items marked."""
    stream, events = run([text("partial"), finish(reason)])
    assert_valid_stream(events)
    response = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert response["incomplete_details"] == {"reason": detail}
    assert response["output"][0]["status"] == "incomplete"
    assert stream.phase is Phase.INCOMPLETE


OTHER_REASONS = ["stop", "tool_calls", "function_call", "eos", None]


@pytest.mark.parametrize("reason", OTHER_REASONS)
def test_stream_any_other_finish_reason_completes(reason: str | None) -> None:
    """Tool calls count even when the server says stop; unusual reasons are completions too."""
    _, events = run([call(0, "{}", call_id="call_1", name="f"), finish(reason)])
    assert events[-1]["type"] == "response.completed"
    assert done_items(events)[0]["status"] == "completed"


DROPPED = [text("Hel"), call(0, '{"a', call_id="call_1", name="f")]
ERROR_MIDSTREAM = [text("Hel"), UpstreamFailed(code="context_length_exceeded", message="too long")]


def test_stream_drop_without_finish_reason_fails_instead_of_completing() -> None:
    """A stream that ends before finish_reason is a failure: a truncated answer is never "completed"."""
    stream, events = run(DROPPED)
    assert_valid_stream(events)
    response = events[-1]["response"]
    assert events[-1]["type"] == "response.failed"
    assert response["error"]["code"] == "upstream_protocol_error"
    assert "finish_reason" in response["error"]["message"]
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]
    assert stream.phase is Phase.FAILED


def test_stream_upstream_error_event_fails_the_response() -> None:
    """An error chunk mid-stream closes open items as incomplete and ends with response.failed."""
    stream, events = run(ERROR_MIDSTREAM, finish=False)
    assert_valid_stream(events)
    assert types(events)[-4:] == [*MESSAGE_CLOSE, "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "context_length_exceeded", "message": "too long"}
    assert done_items(events)[0]["status"] == "incomplete"
    assert stream.phase is Phase.FAILED


UNANNOUNCED = [call(0, '{"cmd":', call_id="call_1", name="f"), call(1, "{", name="apply_patch")]


def test_stream_fail_drops_calls_never_announced() -> None:
    """fail() closes announced calls but never invents items for calls the client was not told of."""
    tools = {"apply_patch": ToolTarget("custom", "apply_patch")}
    stream, events = run(UNANNOUNCED, finish=False, tools=tools)
    events += stream.fail("server_error", "boom")
    assert_valid_stream(events)
    output = events[-1]["response"]["output"]
    assert [(item["type"], item["status"]) for item in output] == [("function_call", "incomplete")]
    assert stream.tool_call_count == 1


def test_stream_fail_before_start_still_sends_a_whole_stream() -> None:
    """fail() before start() emits created and in_progress first, so clients see a valid stream."""
    stream = ResponseStream(model="m", new_id=counter_ids())
    events = stream.fail("upstream_unavailable", "connection refused")
    assert types(events) == [*START, "response.failed"]
    assert_valid_stream(events)


NAMELESS = [call(0, '{"a":1}', call_id="call_1"), finish("tool_calls")]


def test_stream_nameless_tool_call_fails() -> None:
    """A call the upstream never named cannot be dispatched; the turn fails rather than drop it silently."""
    _, events = run(NAMELESS)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_protocol_error"


FRAGMENTS = [
    pytest.param([call(0, "", call_id="c", name="f")], ("c", "f", "{}"), id="empty-arguments-become-{}"),
    pytest.param([call(0, "{}", name="f")], ("call_2", "f", "{}"), id="call-id-generated-when-absent"),
    pytest.param(
        [call(0, '{"a"', call_id="c", name="read_file"), call(0, ":1}", call_id="c", name="read_file")],
        ("c", "read_file", '{"a":1}'),
        id="name-and-id-repeated-on-every-fragment",
    ),
    pytest.param([call(0, '{"a":'), call(0, "1}", call_id="c", name="f")], ("c", "f", '{"a":1}'), id="name-late"),
    pytest.param([call(0, "{}", call_id="c", name="f"), call(0, "", call_id="other", name="g")], ("c", "f", "{}"),
                 id="first-id-and-name-win"),
]


@pytest.mark.parametrize(("chat_events", "expected"), FRAGMENTS)
def test_stream_tool_call_fragments_are_assembled(chat_events: list, expected: tuple[str, str, str]) -> None:
    """Fragments build one call per index: id and name set once, arguments appended exactly."""
    _, events = run([*chat_events, finish("tool_calls")])
    assert_valid_stream(events)
    [item] = done_items(events)
    assert (item["call_id"], item["name"], item["arguments"]) == expected
    deltas = "".join(e["delta"] for e in events if e["type"] == ARGS_DELTA)
    assert deltas == "".join(c.arguments for c in chat_events)


NAMESPACED = {"multi_agent_v1__spawn_agent": ToolTarget("function", "spawn_agent", "multi_agent_v1")}
RENAMED = {"mcp_fs_read": ToolTarget("function", "mcp.fs.read")}


def test_stream_restores_namespaced_function_calls() -> None:
    """A flattened namespace tool comes back with its plain name and the namespace field."""
    chat_events = [call(0, '{"task":"x"}', call_id="c", name="multi_agent_v1__spawn_agent"), finish()]
    _, events = run(chat_events, tools=NAMESPACED)
    assert_valid_stream(events)
    added = next(e["item"] for e in events if e["type"] == "response.output_item.added")
    [item] = done_items(events)
    assert (item["name"], item["namespace"], added["name"], added["namespace"]) == ("spawn_agent", "multi_agent_v1") * 2
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "spawn_agent"


def test_stream_restores_renamed_function_calls() -> None:
    """A tool whose name was made valid for Chat comes back under the client's name."""
    _, events = run([call(0, "{}", call_id="c", name="mcp_fs_read"), finish()], tools=RENAMED)
    assert done_items(events)[0]["name"] == "mcp.fs.read"


CUSTOM = {"apply_patch": ToolTarget("custom", "apply_patch")}
PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"


CUSTOM_ARGUMENTS = [
    pytest.param(json.dumps({"input": PATCH}), PATCH, id="wrapped-input"),
    pytest.param(PATCH, PATCH, id="raw-text-when-not-json"),
    pytest.param(json.dumps({"patch": PATCH}), PATCH, id="any-one-key-object"),
    pytest.param(json.dumps(PATCH), PATCH, id="a-json-string"),
    pytest.param('{"patch": 1}', '{"patch": 1}', id="raw-arguments-when-no-text-in-them"),
    pytest.param(json.dumps({"path": "a.txt", "patch": PATCH}), json.dumps({"path": "a.txt", "patch": PATCH}),
                 id="raw-arguments-when-two-keys"),
]


def custom_call_events(arguments: str) -> list[ToolCallDelta | Finished]:
    chat_events = [call(0, "", call_id="call_p", name="apply_patch"), *[call(0, p) for p in pieces(arguments, 4)]]
    return [*chat_events, finish("tool_calls")]


@pytest.mark.parametrize(("arguments", "expected"), CUSTOM_ARGUMENTS)
def test_stream_restores_custom_tool_calls(arguments: str, expected: str) -> None:
    """A custom tool's call becomes a custom_tool_call whose input is the unwrapped freeform text."""
    _, events = run(custom_call_events(arguments), tools=CUSTOM)
    assert_valid_stream(events)
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    [item] = done_items(events)
    assert item == {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch",
                    "input": expected, "status": "completed"}


SHELL = {"local_shell": ToolTarget("local_shell", "local_shell")}


SHELL_ARGUMENTS = [
    pytest.param('{"command":["ls","-la"]}', {"type": "exec", "command": ["ls", "-la"], "env": {}}, id="list"),
    pytest.param('{"command":"ls -la /tmp"}',
                 {"type": "exec", "command": ["bash", "-lc", "ls -la /tmp"], "env": {}},
                 id="string-command-runs-in-bash"),
    pytest.param('{"command":["make"],"workdir":"/src","timeout_ms":5000}',
                 {"type": "exec", "command": ["make"], "env": {}, "working_directory": "/src", "timeout_ms": 5000},
                 id="workdir-and-timeout"),
]
UNREADABLE_SHELL = [call(0, '{"cmd":"ls"}', call_id="call_s", name="local_shell"), finish()]


@pytest.mark.parametrize(("arguments", "action"), SHELL_ARGUMENTS)
def test_stream_restores_local_shell_calls(arguments: str, action: dict) -> None:
    """The local_shell function becomes a local_shell_call item with an exec action."""
    _, events = run([call(0, arguments, call_id="call_s", name="local_shell"), finish("tool_calls")], tools=SHELL)
    assert_valid_stream(events)
    assert types(events)[2:] == ["response.output_item.added", "response.output_item.done", "response.completed"]
    [item] = done_items(events)
    assert item == {"id": "lsh_1", "type": "local_shell_call", "call_id": "call_s", "action": action,
                    "status": "completed"}


def test_stream_unreadable_local_shell_call_stays_a_function_call() -> None:
    """Arguments that name no command are passed on as a plain call, so Codex can answer the model."""
    _, events = run(UNREADABLE_SHELL, tools=SHELL)
    assert_valid_stream(events)
    [item] = done_items(events)
    assert (item["type"], item["name"], item["arguments"]) == ("function_call", "local_shell", '{"cmd":"ls"}')


UNKNOWN_NAME = [call(0, "{}", call_id="c", name="mystery"), finish()]


def test_stream_unknown_tool_names_are_plain_function_calls() -> None:
    """A name missing from the tool map is passed through as a function call."""
    _, events = run(UNKNOWN_NAME, tools=CUSTOM)
    assert done_items(events)[0]["type"] == "function_call"


MIXED_KINDS = [
    call(0, '{"input":"x"}', call_id="c0", name="apply_patch"),
    call(1, '{"a":1}', call_id="c1", name="f"),
    call(2, '{"command":["ls"]}', call_id="c2", name="local_shell"),
    finish("tool_calls"),
]


def test_stream_mixed_kinds_close_in_upstream_index_order() -> None:
    """Functions stream as they come; custom and shell calls are announced at finish, after them."""
    _, events = run(MIXED_KINDS, tools={**CUSTOM, **SHELL})
    assert_valid_stream(events)
    output = events[-1]["response"]["output"]
    assert [(item["type"], item["call_id"]) for item in output] == [
        ("function_call", "c1"), ("custom_tool_call", "c0"), ("local_shell_call", "c2")
    ]


USAGE = UsageReported(input_tokens=10, output_tokens=5, total_tokens=15, cached_tokens=4, reasoning_tokens=2)
USAGE_DICT = {
    "input_tokens": 10,
    "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 15,
}


USAGE_ORDERS = [
    pytest.param([text("hi"), USAGE, finish()], id="before-finish"),
    pytest.param([text("hi"), finish(), USAGE], id="after-finish"),
]


@pytest.mark.parametrize("chat_events", USAGE_ORDERS)
def test_stream_usage_lands_on_the_terminal_event(chat_events: list) -> None:
    """Usage reported before or after finish_reason is carried by the terminal event only."""
    stream, events = run(chat_events)
    assert events[-1]["response"]["usage"] == USAGE_DICT
    assert all(event["response"]["usage"] is None for event in events[:2])
    assert stream.usage == USAGE_DICT


USAGE_CHUNKS = [
    pytest.param(
        [
            {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                                      "prompt_tokens_details": {"cached_tokens": 4},
                                      "completion_tokens_details": {"reasoning_tokens": 2}}},
        ],
        USAGE_DICT,
        id="trailing-chunk",
    ),
    pytest.param(
        [{"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}],
        {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
         "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10},
        id="finish-chunk-unknown-details-are-0",
    ),
    pytest.param([{"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}], None,
                 id="none"),
]


@pytest.mark.parametrize(("chunks", "expected"), USAGE_CHUNKS)
def test_stream_usage_from_chunks(chunks: list[dict], expected: dict | None) -> None:
    """Usage on a trailing `choices: []` chunk or on the finish chunk reaches response.completed; none is null."""
    _, events = run(event for chunk in chunks for event in read_chunk(chunk))
    assert_valid_stream(events)
    assert events[-1]["response"]["usage"] == expected


EVERY_KIND = [think("t"), text("x"), call(0, "{}", call_id="c", name="f"), finish()]


def test_stream_uses_one_response_id_and_the_id_factory() -> None:
    """The response id and every item id come from new_id, with their prefixes."""
    _, events = run(EVERY_KIND)
    assert_valid_stream(events)
    assert events[0]["response"]["id"] == "resp_0"
    assert [item["id"] for item in done_items(events)] == ["rs_1", "msg_2", "fc_3"]


def test_stream_default_ids_are_prefixed_uuids() -> None:
    """Without an id factory, ids are the prefix plus 32 hex digits."""
    stream = ResponseStream(model="m")
    events = stream.start() + stream.feed(text("x")) + stream.feed(finish()) + stream.finish()
    assert re.fullmatch(r"resp_[0-9a-f]{32}", events[0]["response"]["id"])
    assert re.fullmatch(r"msg_[0-9a-f]{32}", done_items(events)[0]["id"])


def test_stream_response_echoes_the_request() -> None:
    """The Response object repeats the client's settings, as the official API does."""
    request = {
        "model": "m",
        "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0.2,
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "max_output_tokens": 100,
        "metadata": {"k": "v"},
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": False,
        "truncation": "auto",
        "previous_response_id": "resp_before",
        "safety_identifier": "user-hash-1",
        "prompt_cache_key": "conversation-1",
        "user": "u-1",
    }
    stream, _ = run([finish()], request=request, created_at=1_700_000_000, model="m",
                    tools={"f": ToolTarget("function", "f")})
    response = stream.response
    echoed = {key: value for key, value in request.items() if key != "model"}
    # A function tool comes back whole, as the API shows it: with its description and `strict`.
    echoed["tools"] = [{**request["tools"][0], "description": None, "strict": False}]
    assert {key: response[key] for key in echoed} == echoed
    assert (response["created_at"], response["model"], response["object"]) == (1_700_000_000, "m", "response")


def test_stream_response_defaults_without_a_request() -> None:
    """Without a request the echoed fields take the official API's defaults."""
    stream, _ = run([finish()])
    response = stream.response
    assert response["instructions"] is None
    assert response["tools"] == []
    assert (response["tool_choice"], response["parallel_tool_calls"]) == ("auto", True)
    assert (response["temperature"], response["top_p"], response["usage"]) == (1, 1, None)
    assert (response["presence_penalty"], response["frequency_penalty"], response["top_logprobs"]) == (0, 0, 0)
    assert (response["metadata"], response["text"]) == ({}, {"format": {"type": "text"}})
    assert (response["error"], response["incomplete_details"]) == (None, None)
    assert (response["store"], response["background"], response["service_tier"]) == (True, False, "default")
    assert (response["truncation"], response["reasoning"]) == ("disabled", {"effort": None, "summary": None})
    assert (response["max_output_tokens"], response["max_tool_calls"], response["previous_response_id"]) == \
        (None, None, None)
    assert (response["safety_identifier"], response["prompt_cache_key"], response["user"]) == (None, None, None)


def test_stream_response_states_what_was_in_force_not_what_was_asked() -> None:
    """Settings the upstream never got are stated as they applied: no tier, no call limit, no effort."""
    request = {"top_logprobs": 5, "service_tier": "priority", "max_tool_calls": 2, "background": False,
               "reasoning": {"effort": "high", "summary": "auto"},
               "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}},
                        "verbosity": "low"}}
    stream, _ = run([finish()], request=request, unsent=frozenset({"reasoning.effort"}))
    response = stream.response
    assert (response["top_logprobs"], response["service_tier"], response["max_tool_calls"]) == (5, "default", None)
    assert response["background"] is False
    assert response["reasoning"] == {"effort": None, "summary": "auto"}
    assert response["text"] == {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"},
                                           "description": None, "strict": False}, "verbosity": "low"}  # sent


HI = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [{"token": "Yo", "logprob": -2.0,
                                                                                "bytes": [89, 111]}]}
BANG = {"token": "!", "logprob": -0.5, "bytes": [33], "top_logprobs": []}


def test_stream_carries_log_probabilities_when_they_were_asked_for() -> None:
    """Each delta carries its tokens; the done event, the part and the message all of them, spec-valid."""
    request = {"include": ["message.output_text.logprobs"], "top_logprobs": 1}
    stream, events = run([TextDelta(text="Hi", logprobs=(HI,)), TextDelta(text="!", logprobs=(BANG,)),
                          finish()], request=request)
    assert_valid_stream(events)
    assert [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"] == [[HI], [BANG]]
    assert next(e for e in events if e["type"] == "response.output_text.done")["logprobs"] == [HI, BANG]
    added = next(e for e in events if e["type"] == "response.content_part.added")
    assert added["part"]["logprobs"] == []
    assert next(e for e in events if e["type"] == "response.content_part.done")["part"]["logprobs"] == [HI, BANG]
    assert stream.response["output"][0]["content"][0]["logprobs"] == [HI, BANG]
    assert stream.response["top_logprobs"] == 1


def test_stream_leaves_log_probabilities_out_unless_asked() -> None:
    """As the OpenAI API: top_logprobs alone brings none back, even when the upstream sent some."""
    stream, events = run([TextDelta(text="Hi", logprobs=(HI,)), finish()], request={"top_logprobs": 2})
    assert_valid_stream(events)
    assert [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"] == [[]]
    assert "logprobs" not in stream.response["output"][0]["content"][0]


def test_stream_response_lists_only_the_tools_the_upstream_was_offered() -> None:
    """Function, custom, local_shell and namespace tools come back in Responses form; hosted ones were not offered."""
    request = {"tools": [
        {"type": "function", "function": {"name": "chat_shaped", "description": "Old form."}},
        {"type": "function", "name": "strict_one", "description": "", "parameters": {"type": "object"}, "strict": True},
        {"type": "custom", "name": "apply_patch", "description": "Patch files."},
        {"type": "local_shell"},
        {"type": "namespace", "name": "ns", "description": "Agents.",
         "tools": [{"type": "function", "name": "spawn"}, {"type": "web_search"}]},
        {"type": "namespace", "name": "empty", "description": "Only hosted.", "tools": [{"type": "web_search"}]},
        {"type": "web_search", "external_web_access": False},
        {"type": "function", "name": "not_offered"},
        "not a tool",
    ]}
    tools = {"chat_shaped": ToolTarget("function", "chat_shaped"), "strict_one": ToolTarget("function", "strict_one"),
             "apply_patch": ToolTarget("custom", "apply_patch"),
             "local_shell": ToolTarget("local_shell", "local_shell"),
             "ns__spawn": ToolTarget("function", "spawn", "ns")}
    stream, _ = run([finish()], request=request, tools=tools)
    function = {"type": "function", "description": None, "parameters": None, "strict": False}
    assert stream.response["tools"] == [
        {**function, "name": "chat_shaped", "description": "Old form."},
        {**function, "name": "strict_one", "parameters": {"type": "object"}, "strict": True},  # passed on
        {"type": "custom", "name": "apply_patch", "description": "Patch files."},
        {"type": "local_shell"},
        {"type": "namespace", "name": "ns", "description": "Agents.", "tools": [{**function, "name": "spawn"}]},
    ]


@pytest.mark.parametrize("ending", ["completed", "incomplete", "failed"])
def test_stream_completed_at_is_read_from_the_clock_once_at_the_end(ending: str) -> None:
    """completed_at is null until the response is terminal, then the time the caller's clock gave then."""
    times = iter([1_700_000_042.9])
    stream, events = run(TERMINATIONS[ending], finish=ending != "failed", created_at=1_700_000_000,
                         clock=lambda: next(times))
    assert [event["response"]["completed_at"] for event in events if "response" in event] == [None, None, 1_700_000_042]
    assert stream.response["completed_at"] == 1_700_000_042  # read once: a second read would have raised


def test_stream_completed_at_without_a_clock_is_created_at() -> None:
    """Tests that pass no clock get completed_at == created_at, never a real time."""
    stream, _ = run([finish()], created_at=1_700_000_000)
    assert stream.response["completed_at"] == 1_700_000_000


def test_stream_phases_follow_the_verbs() -> None:
    """The phase moves CREATED -> STREAMING -> terminal."""
    stream = ResponseStream(model="m")
    assert stream.phase is Phase.CREATED
    stream.start()
    assert stream.phase is Phase.STREAMING
    stream.feed(finish())
    stream.finish()
    assert stream.phase is Phase.COMPLETED


def test_stream_feed_before_start_raises() -> None:
    """Feeding a stream that was not started is a bug in the caller."""
    stream = ResponseStream(model="m")
    with pytest.raises(BridgeStateError, match="CREATED"):
        stream.feed(text("x"))
    with pytest.raises(BridgeStateError):
        stream.finish()


def test_stream_start_twice_raises() -> None:
    """start() opens the response once."""
    stream = ResponseStream(model="m")
    stream.start()
    with pytest.raises(BridgeStateError):
        stream.start()


TERMINATIONS = {
    "completed": [finish("stop")],
    "incomplete": [finish("length")],
    "failed": [UpstreamFailed(code="server_error", message="x")],
}
VERBS = {
    "start": lambda s: s.start(),
    "feed": lambda s: s.feed(text("late")),
    "finish": lambda s: s.finish(),
    "fail": lambda s: s.fail("server_error", "late"),
}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("ending", TERMINATIONS)
def test_stream_every_verb_after_a_terminal_phase_raises(ending: str, verb: str) -> None:
    """After completed, incomplete or failed, the machine accepts nothing more."""
    stream, _ = run(TERMINATIONS[ending], finish=ending != "failed")
    with pytest.raises(BridgeStateError, match=ending.upper()):
        VERBS[verb](stream)
    assert stream.response["status"] == ending


def test_stream_bridge_state_error_is_a_runtime_error() -> None:
    """Illegal calls are programming errors, not client errors."""
    assert issubclass(BridgeStateError, RuntimeError)


MID_STREAM = [text("a"), call(0, "{}", call_id="c", name="f")]


def test_stream_response_mid_stream_holds_finished_items_only() -> None:
    """The response property is usable at any time; open items join the output when done."""
    stream, _ = run(MID_STREAM, finish=False)
    assert stream.response["status"] == "in_progress"
    assert [item["type"] for item in stream.response["output"]] == ["message"]


# --- heartbeats --------------------------------------------------------------------------------------


def test_stream_heartbeat_mid_answer_is_an_in_progress_numbered_next_with_the_response_as_it_stands() -> None:
    """A silent upstream mid-answer: response.in_progress, numbered on; the stream stays valid around it."""
    stream, events = run([text("Hel")], finish=False)
    [beat] = stream.heartbeat()
    assert beat["type"] == "response.in_progress"
    assert beat["sequence_number"] == events[-1]["sequence_number"] + 1
    assert beat["response"]["status"] == "in_progress"
    assert beat["response"]["id"] == events[0]["response"]["id"]
    events += [beat, *stream.heartbeat(), *stream.feed(text("lo")), *stream.feed(finish("stop")), *stream.finish()]
    assert types(events).count("response.in_progress") == 3  # the opening's and two heartbeats
    assert_valid_stream(events)
    assert stream.response["output"][0]["content"][0]["text"] == "Hello"


def test_stream_heartbeat_gives_nothing_before_the_start_or_after_the_end() -> None:
    """Only a streaming answer beats: before start() and after a terminal event there is nothing to keep alive."""
    stream = ResponseStream(model="m", new_id=counter_ids())
    assert stream.heartbeat() == []
    stream, _ = run([text("x"), finish("stop")])
    assert stream.heartbeat() == []
    failed, _ = run([text("x")], finish=False)
    failed.fail("upstream_error", "gone")
    assert failed.heartbeat() == []
