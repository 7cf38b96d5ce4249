"""The live tail's socket, in process: who may open it, what it sends (the real route of gatewaysite/asgi.py)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils.timezone import now

from logs.audit import tail
from logs.audit.tail import broadcast
from logs.models import Outcome, RequestLog
from logs.pages.live import FORBIDDEN

pytestmark = pytest.mark.django_db(transaction=True)  # the socket reads the session from another thread
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")


def session_cookie(*, staff: bool) -> tuple[bytes, bytes]:
    user = get_user_model().objects.create_user("ops" if staff else "bob", password="pw", is_staff=staff)
    client = Client()
    client.force_login(user)
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(path: str = "/ws/logs/", headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    from gatewaysite.asgi import websocket_app

    return WebsocketCommunicator(websocket_app, path, headers=[HOST, *(headers if headers is not None else [ORIGIN])])


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


def row(request_id: str, **fields: Any) -> RequestLog:
    defaults: dict[str, Any] = {"endpoint": "responses", "model": "m", "upstream_name": "a", "status": 200,
                                "outcome": "ok", "key_name": "alice", "ttfb_ms": 12.0, "duration_ms": 30.0}
    return RequestLog(request_id=request_id, started=now(), **(defaults | fields))


def test_the_socket_refuses_anonymous_visitors() -> None:
    async def scenario() -> tuple[bool, Any]:
        return await communicator().connect()

    assert run(scenario) == (False, FORBIDDEN)


def test_the_socket_refuses_users_who_are_not_staff() -> None:
    cookie = session_cookie(staff=False)

    async def scenario() -> tuple[bool, Any]:
        return await communicator(headers=[ORIGIN, cookie]).connect()

    assert run(scenario) == (False, FORBIDDEN)


@pytest.mark.parametrize("origin", [b"http://evil.example", None], ids=["foreign-origin", "no-origin"])
def test_the_socket_refuses_pages_of_other_sites_even_with_a_staff_cookie(origin: bytes | None) -> None:
    cookie = session_cookie(staff=True)
    headers = [cookie] + ([(b"origin", origin)] if origin else [])

    async def scenario() -> bool:
        connected, _ = await communicator(headers=headers).connect()
        return connected

    assert run(scenario) is False


def test_a_staff_socket_gets_each_finished_request_as_one_json_message() -> None:
    cookie = session_cookie(staff=True)

    async def scenario() -> dict[str, Any]:
        socket = communicator(headers=[ORIGIN, cookie])
        connected, _ = await socket.connect()
        assert connected
        await broadcast([row("req_live_1", input_tokens=3, output_tokens=4)])
        message = await socket.receive_json_from(timeout=2)
        written = await socket.receive_json_from(timeout=2)
        await socket.disconnect()
        assert written == {"type": "written", "count": 1}  # the page's summary reloads on it
        return message

    message = run(scenario)
    assert message["type"] == "request"
    assert message["request"]["request_id"] == "req_live_1" and message["request"]["outcome"] == "ok"
    assert message["request"]["input_tokens"] == 3
    assert message["html"].startswith('<tr class="" data-request-id="req_live_1">')
    assert 'href="/logs/req_live_1/"' in message["html"]


def test_a_socket_sends_only_the_rows_its_page_filters_match() -> None:
    cookie = session_cookie(staff=True)

    async def scenario() -> list[str]:
        socket = communicator("/ws/logs/?outcome=failed&upstream=a", headers=[ORIGIN, cookie])
        assert (await socket.connect())[0]
        await broadcast([row("req_fine"), row("req_other_upstream", outcome="upstream_error", upstream_name="b"),
                         row("req_broken", outcome="upstream_error", status=502, error_type="upstream_unavailable")])
        received = [(await socket.receive_json_from(timeout=2))["request"]["request_id"]]
        # The other two are not sent; that rows were written is, whatever the filters (the summary counts all).
        assert await socket.receive_json_from(timeout=2) == {"type": "written", "count": 3}
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()
        return received

    assert run(scenario) == ["req_broken"]


class BrokenLayer:
    """A channel layer whose Redis is gone (raises) or hangs (never answers)."""

    def __init__(self, *, hang: bool) -> None:
        self.hang = hang

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("Redis is down")


@pytest.mark.parametrize("hang", [False, True], ids=["layer-fails", "layer-hangs"])
def test_a_broadcast_that_fails_is_logged_and_never_raised(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture, hang: bool) -> None:
    monkeypatch.setattr(tail, "get_channel_layer", lambda: BrokenLayer(hang=hang))
    monkeypatch.setattr(tail, "BROADCAST_TIMEOUT", 0.05)
    async def scenario() -> None:
        await broadcast([row("req_unheard"), row("req_unheard_too")])

    run(scenario)
    assert "live tail: 2 request(s) from req_unheard on not broadcast" in caplog.text


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append(message)


def test_the_audit_writer_broadcasts_each_batch_of_rows_as_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send per row made the writer fall behind the requests under load (bench/ soak)."""
    from logs.audit import exchange, writer

    layer = RecordingLayer()
    monkeypatch.setattr(tail, "get_channel_layer", lambda: layer)

    async def scenario() -> None:
        for n in range(30):
            exchange.Exchange(request_id=f"req_batch_{n}", endpoint="responses", client_ip=None,
                           request_bytes=0).finish(exchange.Ending(Outcome.OK))
        await writer.close()

    run(scenario)
    assert RequestLog.objects.filter(request_id__startswith="req_batch_").count() == 30
    assert [len(message["rows"]) for message in layer.sent] == [30]
