"""The capability probe against the bundled mock in each of its shapes (issue 13), and its advice."""
from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.test import Client

from tests.servers import MockUpstream
from upstreams.models import Upstream
from upstreams.probe.capabilities import applied, probe_capabilities, responses_problems

TEXT = {"chunks": [{"text": "hi"}, {"finish": "stop"}]}
CALL = {"chunks": [{"tool": {"index": 0, "id": "call_1", "name": "get_time", "arguments": '{"zone": "Paris"}'}},
                   {"finish": "tool_calls"}]}
NOT_FOUND = {"status": 404, "body": {"error": {"message": "Not Found", "type": "invalid_request_error",
                                               "param": None, "code": None}}}
UNNUMBERED = {"raw": [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in [
    {"type": "response.created", "response": {"id": "r", "object": "response", "status": "in_progress"}},
    {"type": "response.output_text.delta", "delta": "hi"},
]]}


def findings(upstream: Upstream) -> dict[str, tuple[bool, str]]:
    return {f.check: (f.ok, str(f)) for f in probe_capabilities(upstream).findings}


@pytest.fixture
def upstream(scripted: MockUpstream, transactional_db: None) -> Upstream:
    return Upstream.objects.create(name="probed", base_url=scripted.base_url)


def test_a_chat_only_server(scripted: MockUpstream, upstream: Upstream) -> None:
    scripted.script(TEXT, TEXT, CALL, NOT_FOUND)
    found = findings(upstream)
    assert found["models"] == (True, "models: 1 listed: mock-model (32768 tokens)")
    assert found["stream_options"][0] and found["chat stream"][0] and found["tool calls"][0]
    assert found["developer role"][0] and "may be on" in found["developer role"][1]
    assert found["/v1/responses"][0] is False and "not served" in found["/v1/responses"][1]


def test_a_responses_capable_server(scripted: MockUpstream, upstream: Upstream) -> None:
    scripted.script(TEXT, TEXT, CALL, TEXT)
    ok, said = findings(upstream)["/v1/responses"]
    assert ok and "well-formed" in said and "passthrough works" in said


def test_a_broken_responses_stream_is_told_to_keep_bridging(scripted: MockUpstream, upstream: Upstream) -> None:
    scripted.script(TEXT, TEXT, CALL, UNNUMBERED)
    ok, said = findings(upstream)["/v1/responses"]
    assert not ok and "keep bridging" in said and "without a sequence_number" in said and "no terminal event" in said


def test_a_server_that_refuses_stream_options(scripted: MockUpstream, upstream: Upstream) -> None:
    refused = {"status": 400, "body": {"error": {"message": "Unrecognized request argument: stream_options",
                                                 "type": "invalid_request_error", "param": None, "code": None}}}
    scripted.script(refused, TEXT, TEXT, TEXT, NOT_FOUND)
    found = findings(upstream)
    assert found["stream_options"][0] is False and "turn off “send stream_options”" in found["stream_options"][1]
    assert found["chat stream"][0]  # asked again without it
    assert found["tool calls"] == (False, found["tool calls"][1]) and "without calling" in found["tool calls"][1]
    assert scripted.requests()[1]["body"].get("stream_options") is None


REFUSED_LEVEL = {"status": 400, "body": {"error": {"message": "reasoning_effort must be one of low, medium, high",
                                                  "type": "invalid_request_error", "param": "reasoning_effort",
                                                  "code": None}}}


def test_a_server_that_reads_reasoning_effort_gets_it_on_apply(scripted: MockUpstream, upstream: Upstream) -> None:
    scripted.script(TEXT, TEXT, CALL, REFUSED_LEVEL, TEXT, NOT_FOUND)
    out = io.StringIO()
    call_command("probe", "probed", "--apply", stdout=out)
    said = out.getvalue()
    assert "ok  reasoning_effort: read: a made-up level is refused, low is taken" in said
    assert "Applied: send_reasoning_effort = True." in said
    assert [r["body"].get("reasoning_effort") for r in scripted.requests()[3:5]] == ["not-a-level", "low"]
    upstream.refresh_from_db()
    assert upstream.send_reasoning_effort and upstream.send_stream_options


def test_a_server_that_ignores_reasoning_effort_is_not_sent_it(scripted: MockUpstream, upstream: Upstream) -> None:
    Upstream.objects.filter(pk=upstream.pk).update(send_reasoning_effort=True, api="responses")
    upstream.refresh_from_db()
    scripted.script(TEXT, TEXT, CALL, TEXT, TEXT, UNNUMBERED)
    report = probe_capabilities(upstream)
    found = {f.check: (f.ok, str(f)) for f in report.findings}
    assert found["reasoning_effort"][0] is False and "ignored: a made-up level is taken" in found["reasoning_effort"][1]
    # The mock takes anything, an image too.
    assert report.settings == {"send_reasoning_effort": False, "api": "chat", "accepts_images": True}
    assert applied(upstream, report) == {"send_reasoning_effort": False, "api": "chat",
                                         "accepts_images": True}
    upstream.refresh_from_db()
    assert (upstream.send_reasoning_effort, upstream.api) == (False, "chat")
    assert applied(upstream, report) == {}  # already so


def test_the_responses_invariants() -> None:
    good = [{"type": "response.created", "sequence_number": 0},
            {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0},
            {"type": "response.output_text.delta", "sequence_number": 2, "output_index": 0, "content_index": 0},
            {"type": "response.completed", "sequence_number": 3}]
    assert responses_problems(good) == []
    assert responses_problems([{**good[0], "sequence_number": 5}, *good[1:]]) == ["sequence numbers that do not rise"]
    assert responses_problems([good[0], {**good[2], "content_index": None}, good[3]]) == [
        "content events without a content_index"]


def test_the_command_and_the_admin_show_the_report(scripted: MockUpstream, upstream: Upstream,
                                                   admin_client: Client) -> None:
    scripted.script(TEXT, TEXT, CALL, NOT_FOUND)
    out = io.StringIO()
    call_command("probe", "probed", stdout=out)
    report = out.getvalue()
    assert report.startswith("Upstream probed, model mock-model") and "tool calls: called the tool" in report
    scripted.script(TEXT, TEXT, CALL, NOT_FOUND)
    page = admin_client.post("/admin/upstreams/upstream/", follow=True, data={
        "action": "test_connection", "_selected_action": [upstream.pk]}).content.decode()
    assert "Upstream probed: tool calls: called the tool" in page
    assert "Upstream probed: /v1/responses: not served" in page
    # The second action applies what the findings recommend: here, to stop sending stream_options.
    refused = {"status": 400, "body": {"error": {"message": "Unrecognized request argument: stream_options",
                                                 "type": "invalid_request_error", "param": None, "code": None}}}
    scripted.script(refused, TEXT, TEXT, CALL, REFUSED_LEVEL, TEXT, NOT_FOUND)
    page = admin_client.post("/admin/upstreams/upstream/", follow=True, data={
        "action": "test_and_apply", "_selected_action": [upstream.pk]}).content.decode()
    assert "Upstream probed: set send stream options → off, send reasoning effort → on." in page
    upstream.refresh_from_db()
    assert (upstream.send_stream_options, upstream.send_reasoning_effort) == (False, True)


def test_a_server_that_refuses_images_keeps_them_off_the_catalog(scripted: MockUpstream, upstream: Upstream) -> None:
    """The image check is the last: a server that refuses it (a text-only llama.cpp) keeps accepts_images off."""
    said = "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
    refused = {"status": 500, "body": {"error": {"message": said, "type": "server_error", "param": None, "code": 500}}}
    Upstream.objects.filter(pk=upstream.pk).update(accepts_images=True)
    upstream.refresh_from_db()
    scripted.script(TEXT, TEXT, CALL, TEXT, TEXT, NOT_FOUND, refused)
    report = probe_capabilities(upstream)
    found = {f.check: f for f in report.findings}
    assert not found["images"].ok and "image input is not supported" in found["images"].detail
    assert applied(upstream, report)["accepts_images"] is False
    assert scripted.requests()[-1]["body"]["messages"][0]["content"][1]["type"] == "image_url"


@pytest.fixture
def demo_mock() -> Iterator[MockUpstream]:
    server = MockUpstream("demo")
    yield server
    server.stop()


def test_the_demos_findings_are_right(demo_mock: MockUpstream, transactional_db: None) -> None:
    """`make run`'s demo stands for a Chat-only server that calls tools: nothing to fix, nothing to switch on."""
    demo = Upstream.objects.create(name="demo", base_url=demo_mock.base_url,
                                   models="demo-text, demo-tools, demo-tools5")
    report = probe_capabilities(demo)
    found = {f.check: f for f in report.findings}
    assert report.model == "demo-text"
    assert found["tool calls"].ok and str(found["tool calls"]) == "tool calls: called the tool"
    assert not found["/v1/responses"].ok and found["/v1/responses"].advice == ""  # bridged, as it is set
    assert "supports responses” on" not in " ".join(map(str, report.findings))
    assert applied(demo, report).get("api", "chat") == "chat"


def test_an_anthropic_server_is_asked_in_messages_and_its_thinking_sets_the_effort_switch(
        scripted: MockUpstream, transactional_db: None) -> None:
    claude = Upstream.objects.create(name="claude", base_url=scripted.url, api="anthropic", models="claude-x",
                                     api_key="sk-ant-probe")
    thinks = {"chunks": [{"reasoning": "The time is asked."}, {"text": "12:00"}, {"finish": "stop"}]}
    scripted.script(TEXT, CALL, thinks)
    report = probe_capabilities(claude)
    found = {f.check: (f.ok, str(f)) for f in report.findings}
    assert found["messages stream"][0] and found["tools"][0]
    assert found["thinking"] == (True, "thinking: a signed thinking block came back → turn on send reasoning "
                                       "effort (thinking)")
    requests = scripted.requests()
    assert {r["path"] for r in requests} == {"/v1/messages"} and requests[0]["headers"]["x-api-key"] == "sk-ant-probe"
    assert applied(claude, report)["send_reasoning_effort"] is True

    error = {"type": "invalid_request_error", "message": "thinking: Extra inputs are not permitted"}
    refused = {"status": 400, "body": {"type": "error", "error": error}}
    scripted.script(TEXT, CALL, refused)
    found = {f.check: (f.ok, str(f)) for f in probe_capabilities(claude).findings}
    assert found["thinking"][0] is False and "Extra inputs" in found["thinking"][1]
    assert "keep send reasoning effort off" in found["thinking"][1]
