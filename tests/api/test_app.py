"""The API's ASGI app (api/http/app.py) on a plain event loop: no daphne, a fake ``receive`` and ``send``.

The views are this module's own (``urlpatterns`` below, put in place with
``override_settings(ROOT_URLCONF=...)``): one waits until it is cancelled, one crashes, one
returns the streamed answer the test built. ``Probe`` is what they report back.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from api.http.answers import Answer, StreamAnswer
from api.http.app import send_response, serve
from logs.audit import writer as audit
from logs.audit.exchange import Exchange
from logs.audit.writer import AuditWriter
from logs.models import RequestLog
from plumbing.asgitypes import Message, Scope

# --- the views under test, and what they saw ----------------------------------------------------------


@dataclass
class Probe:
    """What this module's views saw; each test gets a fresh one (``probe`` fixture)."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    answer: HttpResponseBase | None = None  # what the ``answer`` view returns


PROBE = Probe()


async def wait_forever(request: HttpRequest) -> HttpResponseBase:
    """Stand for a view waiting on an upstream that never answers."""
    PROBE.started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        PROBE.cancelled = True
        raise
    raise AssertionError("unreachable")


async def crash(request: HttpRequest) -> HttpResponseBase:
    raise KeyError("a bug outside api_view")


async def answer(request: HttpRequest) -> HttpResponseBase:
    PROBE.started.set()
    assert PROBE.answer is not None
    return PROBE.answer


urlpatterns = [
    path("v1/wait", wait_forever),
    path("v1/crash", crash),
    path("v1/answer", answer),
]
in_this_module = override_settings(ROOT_URLCONF=__name__)


@pytest.fixture
def probe() -> Iterator[Probe]:
    global PROBE
    PROBE = Probe()
    yield PROBE


# --- a fake server ------------------------------------------------------------------------------------


def scope_for(url_path: str) -> Scope:
    return {"type": "http", "method": "POST", "path": url_path, "raw_path": url_path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}


class Client:
    """The ``receive`` side: silent until ``disconnect_when`` is set, then ``http.disconnect``.

    ``receive()`` hands back a future the test keeps (``pending``), to see whether the app
    stopped listening (cancelled it) once the request was over.
    """

    def __init__(self, disconnect_when: asyncio.Event | None = None) -> None:
        self.disconnect_when = disconnect_when
        self.pending: list[asyncio.Future[Message]] = []

    def receive(self) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        if self.disconnect_when is not None:
            waiter = asyncio.ensure_future(self.disconnect_when.wait())
            waiter.add_done_callback(lambda _: future.done() or future.set_result({"type": "http.disconnect"}))
        return future


class Sent:
    """The ``send`` side: keeps every message; can fail or hang on the headers or on a body part."""

    def __init__(self, fail_on: str | None = None, hang_on: str | None = None) -> None:
        self.messages: list[Message] = []
        self.fail_on, self.hang_on = fail_on, hang_on
        self.hanging = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        kind = "headers" if message["type"] == "http.response.start" else "part"
        if kind == self.fail_on:
            raise OSError("connection reset by peer")
        if kind == self.hang_on:
            self.hanging.set()
            await asyncio.Event().wait()
        self.messages.append(message)

    @property
    def start(self) -> Message:
        return self.messages[0]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 3.0) -> Any:
    """Run ``scenario`` on a fresh event loop, in its task; a scenario still running after ``timeout`` fails.

    The watchdog cancels the task: a test whose cancellation never came must not pass
    because the watchdog's did (``serve`` would take it for the client's).
    """
    timed_out: list[bool] = []

    async def guarded() -> Any:
        task = asyncio.current_task()
        assert task is not None
        watchdog = asyncio.get_running_loop().call_later(timeout, lambda: (timed_out.append(True), task.cancel()))
        try:
            return await scenario()
        finally:
            watchdog.cancel()

    try:
        return asyncio.run(guarded())
    finally:
        assert not timed_out, f"the scenario was still running after {timeout} s"


# --- a client disconnect and other cancellations ------------------------------------------------------


@in_this_module
def test_it_cancels_the_view_when_the_client_disconnects_and_returns_with_the_task_uncancelled(
        probe: Probe) -> None:
    """The disconnect cancels the serving task itself; ``serve`` undoes that cancellation once it has done its work.

    Left cancelled, the server's task would see its next ``asyncio.timeout`` or TaskGroup
    misread as cancelled (``Task.cancelling()`` counts the requests to cancel it).
    """
    client, sent = Client(disconnect_when=probe.started), Sent()

    async def scenario() -> int:
        await serve(scope_for("/v1/wait"), b"{}", client.receive, sent)  # returns: nothing is raised
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # and the task can go on awaiting: it is not cancelled again
        return task.cancelling()

    assert run(scenario) == 0
    assert probe.cancelled, "the view was not cancelled by the disconnect"
    assert sent.messages == []  # nothing to answer a client that left


@in_this_module
def test_it_lets_a_cancellation_that_is_not_a_client_disconnect_propagate(probe: Probe) -> None:
    """A task cancelled from outside (the shutdown cutting requests) stays cancelled: ``serve`` re-raises it."""
    client, sent = Client(), Sent()

    async def scenario() -> asyncio.Task[None]:
        task = asyncio.ensure_future(serve(scope_for("/v1/wait"), b"{}", client.receive, sent))
        await probe.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = run(scenario)
    assert task.cancelled()
    assert probe.cancelled and sent.messages == []


@in_this_module
def test_it_stops_listening_for_a_disconnect_once_it_has_answered(probe: Probe) -> None:
    """The pending ``receive`` is cancelled when the request is over, so no listener outlives its request."""
    probe.answer = JsonResponse({"ok": True})
    client, sent = Client(), Sent()

    async def scenario() -> None:
        await serve(scope_for("/v1/answer"), b"{}", client.receive, sent)

    run(scenario)
    [listener] = client.pending
    assert listener.cancelled()
    assert orjson.loads(sent.body) == {"ok": True}


# --- paths and crashes --------------------------------------------------------------------------------


def error_of(sent: Sent) -> tuple[int, dict[str, Any]]:
    headers = {name.lower(): value for name, value in sent.start["headers"]}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff"
    return sent.start["status"], orjson.loads(sent.body)


@in_this_module
def test_it_answers_an_unknown_api_path_with_an_openai_shaped_404() -> None:
    sent = Sent()
    run(lambda: serve(scope_for("/v1/embeddings"), b"{}", Client().receive, sent))
    status, body = error_of(sent)
    assert (status, body["error"]["type"], body["error"]["param"], body["error"]["code"]) == (
        404, "invalid_request_error", None, "unknown_url")
    assert body["error"]["message"].startswith("Unknown API path: /v1/embeddings. The gateway serves: /v1/responses")


@in_this_module
def test_it_answers_a_view_that_crashes_with_an_openai_shaped_500(caplog: pytest.LogCaptureFixture) -> None:
    """A crash outside ``api_view`` is still JSON a client can read, and logged for the operator."""
    sent = Sent()
    run(lambda: serve(scope_for("/v1/crash"), b"{}", Client().receive, sent))
    status, body = error_of(sent)
    assert (status, body["error"]["type"], body["error"]["code"]) == (500, "server_error", "internal_error")
    assert "KeyError" in body["error"]["message"] and "a bug outside api_view" not in body["error"]["message"]
    assert "unhandled error on /v1/crash" in caplog.text


# --- a streamed answer is always closed ---------------------------------------------------------------


class StandInStream(StreamAnswer):
    """A StreamAnswer without an upstream: its parts come from ``parts``; ``aclose`` is only counted."""

    def __init__(self, parts: AsyncIterator[bytes]) -> None:
        StreamingHttpResponse.__init__(self, parts, content_type="text/event-stream")
        self.parts, self.beat = parts, None
        self.closes = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.parts

    async def aclose(self) -> None:
        self.closes += 1


async def two_parts(hang_after_first: bool) -> AsyncIterator[bytes]:
    yield b"data: one\n\n"
    if hang_after_first:
        await asyncio.Event().wait()
    yield b"data: two\n\n"


@pytest.mark.parametrize(("fail_on", "hang_on", "raised", "parts_sent"), [
    pytest.param(None, None, None, [b"data: one\n\n", b"data: two\n\n"], id="sent-whole"),
    pytest.param("headers", None, OSError, [], id="send-fails-on-the-headers"),
    pytest.param("part", None, OSError, [], id="send-fails-on-the-first-part"),
    pytest.param(None, "headers", asyncio.CancelledError, [], id="cancelled-before-the-first-part"),
    pytest.param(None, "between-parts", asyncio.CancelledError, [b"data: one\n\n"], id="cancelled-between-parts"),
])
def test_it_closes_a_streamed_answer_however_sending_it_ends(fail_on: str | None, hang_on: str | None,
                                                             raised: type[BaseException] | None,
                                                             parts_sent: list[bytes]) -> None:
    """``aclose`` is what writes a stream's audit row: it runs once, whether the stream was sent, failed or cut."""
    sent = Sent(fail_on=fail_on, hang_on=hang_on if hang_on == "headers" else None)
    response = StandInStream(two_parts(hang_after_first=hang_on == "between-parts"))

    async def scenario() -> BaseException | None:
        task = asyncio.ensure_future(send_response(response, sent))
        if hang_on == "headers":
            await sent.hanging.wait()
            task.cancel()
        elif hang_on == "between-parts":
            while len(sent.messages) < 2:
                await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        except BaseException as exc:  # CancelledError too: what send_response let out
            return exc
        return None

    error = run(scenario)
    assert type(error) is raised if raised else error is None
    assert response.closes == 1
    assert [m["body"] for m in sent.messages[1:] if m.get("more_body")] == parts_sent
    if raised is None:
        assert sent.messages[-1] == {"type": "http.response.body"}  # the end of the body, after the parts


def test_a_stream_silent_between_parts_gets_heartbeats_there_and_none_after_it_ends() -> None:
    """Silent for 0.5 s with a 0.1 s heartbeat: beats go between the two parts, counted as sent; none after the end."""
    beats: list[bytes] = []

    async def paused() -> AsyncIterator[bytes]:
        yield b"data: one\n\n"
        await asyncio.sleep(0.5)
        yield b"data: two\n\n"

    def beat() -> bytes:
        beats.append(b": beat %d\n\n" % len(beats))
        return beats[-1]

    exchange = Exchange(request_id="req_beats", endpoint="responses", client_ip="127.0.0.1", request_bytes=2)
    response = StreamAnswer(paused(), exchange, None, beat=beat, every=0.1)
    sent = Sent()

    async def scenario() -> None:
        await send_response(response, sent)
        await asyncio.sleep(0.3)  # a heartbeat task still running now would send after the end

    run(scenario)
    bodies = [m["body"] for m in sent.messages[1:] if m.get("more_body")]
    assert beats and bodies == [b"data: one\n\n", *beats, b"data: two\n\n"]
    assert sent.messages[-1] == {"type": "http.response.body"}
    assert exchange.response_bytes == sum(map(len, bodies))


async def upstream_body() -> AsyncIterator[bytes]:
    yield b'data: {"choices": []}\n\n'


@in_this_module
def test_it_writes_the_audit_row_of_a_stream_whose_client_left_before_its_first_part(
        transactional_db: None, probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay never started, yet the upstream is closed and the one row says the client disconnected."""
    monkeypatch.setattr(audit, "WRITER", AuditWriter())  # this loop's own writer: its Event binds to one loop
    exchange = Exchange(request_id="req_left_early", endpoint="chat/completions", client_ip="127.0.0.1",
                        request_bytes=2)
    upstream = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=upstream_body())
    relayed: list[bytes] = []

    async def relay() -> AsyncIterator[bytes]:
        async for chunk in upstream.aiter_raw():
            relayed.append(chunk)
            yield chunk

    probe.answer = StreamAnswer(relay(), exchange, Answer(exchange, upstream.status_code).hold(),
                                on_close=upstream.aclose)
    sent = Sent(hang_on="headers")
    client = Client(disconnect_when=sent.hanging)

    async def scenario() -> None:
        await serve(scope_for("/v1/answer"), b"{}", client.receive, sent)
        await audit.close()

    run(scenario)
    assert upstream.is_closed and relayed == []
    row = RequestLog.objects.get(request_id="req_left_early")
    assert (row.outcome, row.status, row.endpoint, row.error_type) == ("client_disconnected", 200,
                                                                        "chat/completions", "")
