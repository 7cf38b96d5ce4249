"""Graceful shutdown (plumbing/shutdown.py): on SIGTERM, streams in flight finish and their rows are written."""
from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx

from logs.models import RequestLog
from plumbing.shutdown import Shutdown, ShutdownMiddleware
from tests import waiting
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

StartGateway = Callable[..., Gateway]


class StreamReader(threading.Thread):
    """Read a streaming /v1/responses answer in the background; ``first`` is set at its first event."""

    def __init__(self, gateway: Gateway, key: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.gateway, self.key, self.body = gateway, key, body
        self.first = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.request_id = ""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.gateway.url}/v1/responses", json={"stream": True, **self.body},
                              headers={"authorization": f"Bearer {self.key}"}, timeout=30) as response:
                self.request_id = response.headers["x-request-id"]
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
                        self.first.set()
        except Exception as exc:  # the cut stream: kept for the test to look at
            self.error = exc
        finally:
            self.first.set()


def slow_text(pieces: int, delay: float) -> dict[str, Any]:
    return {"chunks": [*({"text": f"w{n} "} for n in range(pieces)), {"finish": "stop"}], "delay": delay}


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_lets_a_stream_in_flight_finish_and_writes_its_row(start_gateway: StartGateway,
                                                                   scripted: MockUpstream, chat_upstream: Upstream,
                                                                   active_key: str) -> None:
    server = start_gateway(GATEWAY_SHUTDOWN_GRACE="30")
    scripted.script(slow_text(10, 0.3))
    reader = StreamReader(server, active_key, {"model": "mock-model", "input": "hi"})
    reader.start()
    assert reader.first.wait(10) and not reader.error
    server.process.send_signal(signal.SIGTERM)

    # The listening socket closes: new clients are refused at once.
    waiting.until(lambda: refused(server.url), "the gateway to stop accepting connections", 5, interval=0.05)
    assert server.process.poll() is None, "the gateway exited with a stream in flight"

    reader.join(15)
    assert reader.error is None
    assert_valid_stream(reader.events)
    assert reader.events[-1]["type"] == "response.completed"
    assert "".join(e["delta"] for e in reader.events if e["type"] == "response.output_text.delta") == \
        "".join(f"w{n} " for n in range(10))
    assert server.process.wait(timeout=30) == 0
    row = wait_for_log(reader.request_id)
    assert (row.outcome, row.status, row.stream) == ("ok", 200, True)
    assert "shutting down: 1 request(s) in flight" in server.log()


def test_a_stream_longer_than_the_grace_is_cut_and_still_recorded(start_gateway: StartGateway,
                                                                   scripted: MockUpstream, chat_upstream: Upstream,
                                                                   active_key: str) -> None:
    server = start_gateway(GATEWAY_SHUTDOWN_GRACE="1")
    scripted.script(slow_text(100, 0.3))  # 30 s of stream
    reader = StreamReader(server, active_key, {"model": "mock-model", "input": "hi"})
    reader.start()
    assert reader.first.wait(10) and not reader.error
    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=10) == 0
    reader.join(5)
    assert not reader.is_alive() and not reader.error
    # Cut, but not silent: the stream ends with response.failed saying why.
    assert reader.events[-1]["type"] == "response.failed"
    assert reader.events[-1]["response"]["error"]["code"] == "shutting_down"
    [row] = wait_for_logs(1)
    assert row.request_id == reader.request_id
    assert (row.outcome, row.error_type) == ("gateway_error", "shutting_down") and row.finished is not None
    assert "grace over: ending 1 request(s)" in server.log()


def test_a_second_sigterm_cuts_the_grace_short(start_gateway: StartGateway, scripted: MockUpstream,
                                               chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(GATEWAY_SHUTDOWN_GRACE="60")
    scripted.script(slow_text(100, 0.3))
    reader = StreamReader(server, active_key, {"model": "mock-model", "input": "hi"})
    reader.start()
    assert reader.first.wait(10)
    server.process.send_signal(signal.SIGTERM)
    waiting.until(lambda: "shutting down: 1 request(s) in flight" in server.log(), "the drain to begin")
    assert server.process.poll() is None
    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=10) == 0
    [row] = wait_for_logs(1)
    assert row.request_id == reader.request_id and row.error_type == "shutting_down"


def test_a_kept_alive_connection_gets_503_shutting_down_while_draining(start_gateway: StartGateway,
                                                                       scripted: MockUpstream,
                                                                       chat_upstream: Upstream,
                                                                       active_key: str) -> None:
    server = start_gateway(GATEWAY_SHUTDOWN_GRACE="30")
    scripted.script(slow_text(10, 0.3))
    auth = {"authorization": f"Bearer {active_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as kept:
        assert kept.get("/healthz").status_code == 200  # opens the connection kept alive below
        reader = StreamReader(server, active_key, {"model": "mock-model", "input": "hi"})
        reader.start()
        assert reader.first.wait(10)
        server.process.send_signal(signal.SIGTERM)
        waiting.until(lambda: refused(server.url), "the gateway to stop accepting connections", 5, interval=0.05)

        assert kept.get("/metrics").status_code == 200  # scrapers still see the drain
        response = kept.post("/v1/responses", json={"model": "mock-model", "input": "late"},
                             headers={"x-request-id": "req-late"})
    assert response.status_code == 503
    assert response.json() == {"error": {"message": "The gateway is shutting down; retry the request.",
                                         "type": "server_error", "param": None, "code": "shutting_down"}}
    assert response.headers["x-request-id"] == "req-late"
    reader.join(15)
    assert reader.events[-1]["type"] == "response.completed"
    assert server.process.wait(timeout=30) == 0
    late = wait_for_log("req-late")
    assert (late.outcome, late.status, late.endpoint, late.error_type) == ("rejected", 503, "responses",
                                                                          "shutting_down")
    assert RequestLog.objects.count() == 2
    assert len(scripted.requests()) == 1  # the refused request never reached the upstream


def test_sigterm_with_nothing_in_flight_exits_at_once(start_gateway: StartGateway) -> None:
    server = start_gateway()  # the default grace is 30 s: exiting within 10 means it did not wait for it
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0


# --- the middleware alone, on a plain event loop ----------------------------------------------------------


async def _call(app: ShutdownMiddleware, path: str, receive: Any = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "path": path, "headers": [], "client": ("127.0.0.1", 1)}
    await app(scope, receive or no_body, send)
    return sent


def test_the_middleware_counts_requests_in_flight() -> None:
    shutdown = Shutdown()
    seen: list[int] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(shutdown.in_flight)

    asyncio.run(_call(ShutdownMiddleware(inner, shutdown), "/healthz"))
    assert seen == [1] and shutdown.in_flight == 0


def test_the_middleware_answers_health_and_metrics_while_draining() -> None:
    shutdown = Shutdown()
    shutdown.begin()
    called: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["path"])

    app = ShutdownMiddleware(inner, shutdown)
    asyncio.run(_call(app, "/healthz"))
    asyncio.run(_call(app, "/metrics"))
    [start, body] = asyncio.run(_call(app, "/readyz"))
    assert called == ["/healthz", "/metrics"]
    assert start["status"] == 503 and json.loads(body["body"])["error"]["code"] == "shutting_down"


def test_a_cut_answers_the_pending_receive_with_a_disconnect() -> None:
    shutdown = Shutdown()
    got: list[dict[str, Any]] = []

    async def never() -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())

    async def scenario() -> None:
        task = asyncio.ensure_future(_call(ShutdownMiddleware(inner, shutdown), "/v1/responses", never))
        await asyncio.sleep(0.05)
        assert shutdown.in_flight == 1
        shutdown.cut()
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
    assert got == [{"type": "http.disconnect"}] and shutdown.in_flight == 0
