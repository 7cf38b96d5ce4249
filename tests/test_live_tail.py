"""The live tail over real sockets to real daphne processes: auth, origin, and rows from any process.

The cross-process case runs two gateways on the machine's Redis (TEST_REDIS_URL, default
redis://127.0.0.1:6379/15), as tests/test_scale_out.py does.
"""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.servers import PASSWORD, Gateway, MockUpstream, log_in
from upstreams.models import Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def sign_in(server: Gateway, *, staff: bool = True) -> str:
    """Sign a user in through the admin login page, as a browser would; return the Cookie header."""
    username = "ops" if staff else "bob"
    get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff)
    if not staff:  # the admin login page refuses non-staff: make the session the way another login would
        from django.test import Client

        client = Client()
        client.login(username=username, password=PASSWORD)
        return f"sessionid={client.cookies['sessionid'].value}"
    with httpx.Client(base_url=server.url, follow_redirects=True) as client:
        log_in(client, username, then="/logs/")
        return f"sessionid={client.cookies['sessionid']}"


def tail(server: Gateway, cookie: str | None, origin: str | None = None, query: str = "") -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return connect(f"ws://127.0.0.1:{server.port}/ws/logs/{query}", origin=origin or server.url,
                   additional_headers=headers, open_timeout=10)


def next_request(socket: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next row the socket sends, past the notices that rows were written (which the page's summary reloads on)."""
    while True:
        message = json.loads(socket.recv(timeout=timeout))
        if message["type"] != "written":
            assert message["type"] == "request"
            return message


@pytest.mark.parametrize(("who", "origin"), [("anonymous", None), ("not-staff", None), ("staff", "http://evil.example"),
                                           ("staff", "http://127.0.0.1:1")], ids=["anonymous", "not-staff",
                                                                                  "another-site", "another-port"])
def test_the_socket_refuses_everyone_but_staff_on_the_gateways_own_pages(gateway: Gateway, who: str,
                                                                         origin: str | None) -> None:
    cookie = None if who == "anonymous" else sign_in(gateway, staff=who == "staff")
    with pytest.raises(InvalidStatus) as refused:
        tail(gateway, cookie, origin)
    assert refused.value.response.status_code == 403


def test_a_finished_request_reaches_a_staff_socket_as_one_json_message(gateway: Gateway, scripted: MockUpstream,
                                                                      chat_upstream: Upstream,
                                                                      active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    with tail(gateway, sign_in(gateway)) as socket:
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                            headers={"authorization": f"Bearer {active_key}", "x-request-id": "req_tail_1"})
        assert answer.status_code == 200
        message = next_request(socket)
    row = message["request"]
    assert (row["request_id"], row["key_name"], row["upstream_name"], row["outcome"]) == (
        "req_tail_1", "alice", "chat-mock", "ok")
    assert row["input_tokens"] == 5 and row["ttfb_ms"] > 0 and row["connected_ms"] <= row["ttfb_ms"]
    assert 'data-request-id="req_tail_1"' in message["html"]


def test_a_socket_gets_only_the_requests_its_filters_match(gateway: Gateway, scripted: MockUpstream,
                                                           chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    headers = {"authorization": f"Bearer {active_key}"}
    with tail(gateway, sign_in(gateway), query="?outcome=failed") as socket:
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)
        httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "model": ""}, headers=headers)
        message = next_request(socket)
        gateway.settle()
        with pytest.raises(TimeoutError):  # no other row: only notices that rows were written
            while True:
                assert json.loads(socket.recv(timeout=0.3))["type"] == "written"
    assert (message["request"]["outcome"], message["request"]["status"]) == ("rejected", 400)


def test_a_request_served_by_one_process_appears_on_a_socket_held_by_another(
        pair: tuple[Gateway, Gateway], scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    a, b = pair
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    with tail(a, sign_in(a)) as socket:
        answer = httpx.post(f"{b.url}/v1/chat/completions", json=CHAT,
                            headers={"authorization": f"Bearer {active_key}", "x-request-id": "req_from_b"})
        assert answer.status_code == 200
        message = next_request(socket)
    assert message["request"]["request_id"] == "req_from_b"
