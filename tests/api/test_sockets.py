"""Responses over a WebSocket (``ws://host/v1/responses``): a real daphne, a real mock upstream, the
``websockets`` client. Every path of api/socket.py, errors included; Codex itself is in test_codex_cli.py.
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from logs.models import RequestLog
from tests import waiting
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

TEXT = {"chunks": [{"text": "Hello"}, {"text": " there"}, {"finish": "stop"}]}
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}]
CALL = {"chunks": [{"tool": {"index": 0, "id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'}},
                   {"finish": "tool_calls"}]}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def ws_url(gateway: Gateway, path: str = "/v1/responses") -> str:
    return gateway.url.replace("http://", "ws://") + path


@contextmanager
def socket(gateway: Gateway, key: str, path: str = "/v1/responses") -> Iterator[ClientConnection]:
    with connect(ws_url(gateway, path), additional_headers={"authorization": f"Bearer {key}"},
                 open_timeout=10, max_size=None) as ws:
        yield ws


def create(ws: ClientConnection, **fields: object) -> list[dict]:
    """Send one response.create; return its events up to the terminal one (or the error event)."""
    ws.send(json.dumps({"type": "response.create", "model": "m", **fields}))
    return answer(ws)


def answer(ws: ClientConnection) -> list[dict]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] in TERMINAL or event["type"] == "error":
            return events


def test_turns_continue_by_id_over_one_socket_with_store_false(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(CALL, TEXT)
    with socket(gateway, active_key) as ws:
        first = create(ws, input="list the files", tools=TOOLS, store=False)
        assert_valid_stream(first)
        response = first[-1]["response"]
        call = response["output"][0]
        assert call["type"] == "function_call" and call["name"] == "exec_command"
        # Only the new item, as Codex sends a follow-up: the call is not sent again.
        second = create(ws, input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"}],
                        tools=TOOLS, store=False, previous_response_id=response["id"])
    assert_valid_stream(second)
    assert second[-1]["response"]["previous_response_id"] == response["id"]
    assert second[-1]["response"]["output"][0]["content"][0]["text"] == "Hello there"
    # The upstream got the whole history, stateless: the question, the call, its output.
    messages = scripted.requests()[1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[0]["content"] == "list the files" and messages[2]["content"] == "a.txt"
    rows = wait_for_logs(2)
    assert [(r.transport, r.outcome, r.mode, r.endpoint) for r in rows] == [
        ("websocket", "ok", "bridge", "responses")] * 2


def test_a_responses_upstream_is_passed_through_and_continued_by_id(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    scripted.script(TEXT, TEXT)
    with socket(gateway, active_key) as ws:
        first = create(ws, input="one", store=False)
        second = create(ws, input="two", store=False, previous_response_id=first[-1]["response"]["id"])
    assert first[-1]["type"] == second[-1]["type"] == "response.completed"
    # The upstream's own events, relayed; the second request carried the whole history, stateless.
    sent = scripted.requests()[1]["body"]
    assert "previous_response_id" not in sent
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user"]
    rows = wait_for_logs(2)
    assert [(r.transport, r.mode) for r in rows] == [("websocket", "passthrough")] * 2


def test_the_warm_up_generates_nothing_and_the_first_turn_continues_it(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(TEXT)
    with socket(gateway, active_key) as ws:
        warm = create(ws, input=[{"type": "message", "role": "developer", "content": "Be brief."}],
                      store=False, generate=False)
        assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
        assert warm[-1]["response"]["output"] == [] and scripted.requests() == []  # no upstream asked
        turn = create(ws, input="hi", store=False, previous_response_id=warm[-1]["response"]["id"])
    assert turn[-1]["type"] == "response.completed"
    messages = scripted.requests()[0]["body"]["messages"]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rows = wait_for_logs(2)
    assert [(r.transport, r.upstream_name, r.outcome) for r in rows] == [("websocket", "", "ok"),
                                                                        ("websocket", "chat-mock", "ok")]


def test_a_stored_response_continues_over_the_socket_and_over_http(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    import httpx
    scripted.script(TEXT, TEXT)
    with socket(gateway, active_key, path="/responses") as ws:  # the path without /v1 too
        first = create(ws, input="one")  # store defaults to true: kept by the gateway
    response_id = first[-1]["response"]["id"]
    http = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"},
                      json={"model": "m", "input": "two", "previous_response_id": response_id})
    assert http.status_code == 200
    assert [m["content"] for m in scripted.requests()[1]["body"]["messages"]] == ["one", "Hello there", "two"]


def test_messages_sent_together_are_answered_one_at_a_time_in_order(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "first"}, {"finish": "stop"}], "delay": 0.2},
                    {"chunks": [{"text": "second"}, {"finish": "stop"}]})
    with socket(gateway, active_key) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "a", "store": False}))
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "b", "store": False}))
        one, two = answer(ws), answer(ws)
    texts = [events[-1]["response"]["output"][0]["content"][0]["text"] for events in (one, two)]
    assert texts == ["first", "second"]
    # Each stream whole before the next began.
    assert [e["sequence_number"] for e in one] == list(range(len(one)))


def test_a_bad_key_is_refused_at_the_upgrade_with_the_apis_status_and_body(
        gateway: Gateway, active_key: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        with socket(gateway, "sk-not-a-key"):
            pass
    response = refused.value.response
    assert response.status_code == 401
    error = json.loads(response.body)["error"]
    assert error["type"] == "invalid_request_error" and "Incorrect or revoked" in error["message"]
    assert response.headers["content-type"] == "application/json"
    row = wait_for_logs(1)[0]
    assert (row.transport, row.status, row.outcome, row.error_type) == ("websocket", 401, "rejected",
                                                                         "invalid_api_key")


def test_an_unknown_previous_response_is_an_error_event_codex_recovers_from(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    with socket(gateway, active_key) as ws:
        [error] = create(ws, input="hi", store=False, previous_response_id="resp_nowhere")
        # The socket stays open: the turn can be sent again, whole.
        scripted.script(TEXT)
        assert create(ws, input="hi", store=False)[-1]["type"] == "response.completed"
    assert (error["type"], error["status"]) == ("error", 400)
    assert (error["error"]["code"], error["error"]["param"]) == ("previous_response_not_found",
                                                                 "previous_response_id")
    rows = wait_for_logs(2)
    assert rows[0].outcome == "rejected" and rows[0].transport == "websocket"


@pytest.mark.parametrize(("message", "code"), [
    pytest.param("{not json", "invalid_json", id="not-json"),
    pytest.param('["response.create"]', "invalid_message", id="not-an-object"),
    pytest.param('{"type": "response.cancel"}', "unknown_event_type", id="another-type"),
    pytest.param('{"type": "response.create", "model": "m", "input": "hi", "stream_id": "b"}',
                 "unsupported_parameter", id="stream-lanes"),
    pytest.param('{"type": "response.create", "model": "m", "input": "hi", "background": true}',
                 "unsupported_parameter", id="background"),
    pytest.param('{"type": "response.create", "input": "hi"}', "missing_required_parameter", id="no-model"),
])
def test_a_malformed_message_gets_a_400_error_event_and_a_row(gateway: Gateway, chat_upstream: Upstream,
                                                              active_key: str, message: str, code: str) -> None:
    with socket(gateway, active_key) as ws:
        ws.send(message)
        error = json.loads(ws.recv(timeout=10))
        ws.send(b"\x00binary")
        binary = json.loads(ws.recv(timeout=10))
    assert (error["type"], error["status"], error["error"]["code"]) == ("error", 400, code)
    assert binary["error"]["code"] == "invalid_message"
    rows = wait_for_logs(2)
    assert all((r.transport, r.status, r.outcome) == ("websocket", 400, "rejected") for r in rows)


def test_each_response_create_counts_against_the_keys_rate_limit(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    ClientKey.objects.filter(name="alice").update(rate_limit="2/h")
    scripted.script(TEXT)
    with socket(gateway, active_key) as ws:
        answers = [create(ws, input="hi", store=False) for _ in range(3)]
    assert [a[-1]["type"] for a in answers] == ["response.completed", "response.completed", "error"]
    refused = answers[2][-1]
    assert (refused["status"], refused["error"]["code"]) == (429, "rate_limit_exceeded")
    assert 0 < int(refused["headers"]["retry-after"]) <= 3600 and refused["headers"]["x-ratelimit-remaining"] == "0"
    assert len(scripted.requests()) == 2
    rows = wait_for_logs(3)
    assert [(r.status, r.outcome, r.transport) for r in rows][-1] == (429, "rejected", "websocket")


def test_an_upstream_429_comes_back_with_its_status_and_retry_hint(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"status": 429, "headers": {"Retry-After": "7", "X-RateLimit-Remaining-Requests": "0"},
                     "body": {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                        "code": "rate_limit_exceeded"}}})
    with socket(gateway, active_key) as ws:
        [error] = create(ws, input="hi", store=False)
    assert (error["type"], error["status"]) == ("error", 429)
    assert error["error"]["message"] == "slow down" and error["error"]["code"] == "rate_limit_exceeded"
    assert error["headers"]["retry-after"] == "7" and error["headers"]["x-ratelimit-remaining-requests"] == "0"
    row = wait_for_logs(1)[0]
    assert (row.transport, row.status, row.outcome) == ("websocket", 429, "upstream_error")


def test_an_upstream_that_breaks_mid_stream_ends_in_response_failed(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "half an ans"}], "done": False})
    with socket(gateway, active_key) as ws:
        events = create(ws, input="hi", store=False)
        assert_valid_stream(events)
        assert events[-1]["type"] == "response.failed"
        # What failed is forgotten: continuing it is refused, the socket still works.
        [error] = create(ws, input="go on", store=False, previous_response_id=events[-1]["response"]["id"])
    assert error["error"]["code"] == "previous_response_not_found"


def test_closing_the_socket_mid_answer_cancels_the_upstream(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "tick "}], "repeat": 10_000, "delay": 0.05})
    with socket(gateway, active_key) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "count", "store": False}))
        while json.loads(ws.recv(timeout=10))["type"] != "response.output_text.delta":
            pass
    row = wait_for_logs(1)[0]
    assert (row.transport, row.outcome) == ("websocket", "client_disconnected")
    assert waiting.until(lambda: scripted.requests()[0]["disconnected_at"], "the upstream request to be cancelled")


def test_an_old_connection_is_told_to_reconnect(start_gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                                active_key: str) -> None:
    server = start_gateway(GATEWAY_WEBSOCKET_MAX_AGE="0.5")
    with socket(server, active_key) as ws:
        time.sleep(0.6)
        [error] = create(ws, input="hi", store=False)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert (error["status"], error["error"]["code"]) == (400, "websocket_connection_limit_reached")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert scripted.requests() == []


def test_sigterm_lets_the_answer_finish_then_closes_the_socket(start_gateway, scripted: MockUpstream,
                                                               chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(GATEWAY_SHUTDOWN_GRACE="20")
    scripted.script({"chunks": [{"text": "slow "}, {"finish": "stop"}], "repeat": 20, "delay": 0.05})
    with socket(server, active_key) as busy, socket(server, active_key) as idle:
        busy.send(json.dumps({"type": "response.create", "model": "m", "input": "go", "store": False}))
        assert json.loads(busy.recv(timeout=10))["type"] == "response.created"
        os.kill(server.process.pid, signal.SIGTERM)
        events = answer(busy)
        with pytest.raises(ConnectionClosed) as idle_closed:
            idle.recv(timeout=10)
        with pytest.raises(ConnectionClosed) as busy_closed:
            busy.recv(timeout=10)
    assert events[-1]["type"] == "response.completed", (events[-1], server.log()[-3000:])
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "slow " * 20
    assert idle_closed.value.rcvd.code == busy_closed.value.rcvd.code == 1000
    server.process.wait(timeout=30)
    row = RequestLog.objects.get()
    assert (row.transport, row.outcome) == ("websocket", "ok")
