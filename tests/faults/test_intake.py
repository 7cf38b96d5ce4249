"""What daphne refuses before the application reads (issue 12): bodies over the limit, trickled headers.

Each test counts what it sent before the answer came: a body over GATEWAY_MAX_BODY_BYTES
is answered 413 before it is read (Content-Length) or as soon as it passes the limit
(chunked), and leaves one audit row; a connection that trickles its headers is closed
once GATEWAY_HEADER_TIMEOUT has passed.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from tests.conftest import wait_for_logs
from tests.servers import Gateway
from upstreams.models import Upstream

LIMIT = 1024 * 1024
HEADER_TIMEOUT = 1.0
LINGER = 2.0  # plumbing/patches/intake.py


@pytest.fixture
def gateway(start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway(GATEWAY_MAX_BODY_BYTES=str(LIMIT), GATEWAY_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                         GATEWAY_ROUTING_TTL="60")


def read_answer(client: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP answer with a Content-Length from ``client``: status, headers, body."""
    client.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = client.recv(65536)
        assert part, f"connection closed before an answer: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            body += client.recv(65536)
        return int(lines[0].split()[1]), headers, body
    while len(body) < int(headers.get("content-length", "0")):
        body += client.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_declared_length_over_the_limit_is_answered_413_before_any_of_the_body_is_sent(
        gateway: Gateway, active_key: str) -> None:
    client = socket.create_connection(("127.0.0.1", gateway.port))
    client.sendall((f"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {active_key}\r\n"
                    f"x-request-id: too-big-1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode())
    status, headers, body = read_answer(client)  # not one byte of the 300 MB sent
    client.close()
    assert status == 413 and headers["x-request-id"] == "too-big-1"
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    [row] = wait_for_logs(1)
    assert (row.request_id, row.status, row.outcome, row.key_name) == ("too-big-1", 413, "rejected", "")
    assert row.request_bytes == 300 * 1024 * 1024 and row.endpoint == "responses"


def test_expect_100_continue_gets_the_413_instead_of_continue(gateway: Gateway, active_key: str) -> None:
    client = socket.create_connection(("127.0.0.1", gateway.port))
    client.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {active_key}\r\n"
                    f"Expect: 100-continue\r\nContent-Length: {LIMIT + 1}\r\n\r\n").encode())
    status, _, _ = read_answer(client)
    client.close()
    assert status == 413
    assert wait_for_logs(1)[0].status == 413


def test_httpx_sending_a_large_body_reads_the_413(gateway: Gateway, active_key: str) -> None:
    """httpx writes the whole body before it reads: the connection lingers, dropping it, so the answer is read."""
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{gateway.url}/v1/responses", content=b"x" * (64 * LIMIT),
                             headers={"authorization": f"Bearer {active_key}", "content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert wait_for_logs(1)[0].status == 413


def chunked(parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"


def test_a_chunked_body_is_answered_413_once_it_passes_the_limit(
        gateway: Gateway, active_key: str, chat_upstream: Upstream) -> None:
    # The key is in the process's routing copy once used: the refusal's row names it (no database trip).
    assert httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {active_key}"}).status_code == 200
    client = socket.create_connection(("127.0.0.1", gateway.port))
    client.sendall((f"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {active_key}\r\n"
                    f"Transfer-Encoding: chunked\r\n\r\n").encode())
    client.settimeout(0.05)
    sent, answer = 0, b""
    for piece in chunked(iter(lambda: b"y" * 65536, None)):  # type: ignore[arg-type]
        try:
            client.sendall(piece)
            sent += len(piece)
            answer = client.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer or sent > 20 * LIMIT:
            break
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert LIMIT < sent < 4 * LIMIT  # the answer came at the limit, not at the end of the body
    client.close()
    row = wait_for_logs(2)[-1]
    assert row.status == 413 and row.key_name == "alice" and LIMIT < row.request_bytes <= sent


def test_a_body_under_the_limit_is_served(gateway: Gateway, active_key: str, chat_upstream: Upstream) -> None:
    text = "z" * (LIMIT // 2)
    answer = httpx.post(f"{gateway.url}/v1/responses", json={"model": "mock-model", "input": text}, timeout=30,
                        headers={"authorization": f"Bearer {active_key}"})
    assert answer.status_code == 200, answer.text


def test_connections_that_trickle_their_headers_are_closed_at_the_deadline(
        gateway: Gateway, active_key: str) -> None:
    slow = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(50)]
    # A header that never ends (under Twisted's 16 KB header limit at this pace).
    request = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 8000
    opened = time.monotonic()
    closed_at: dict[int, float] = {}
    answers: list[bytes] = []
    for client in slow:
        client.setblocking(False)
    sent = 0
    while len(closed_at) < len(slow) and time.monotonic() - opened < HEADER_TIMEOUT + LINGER + 10:
        for n, client in enumerate(slow):
            if n in closed_at:
                continue
            try:
                client.send(request[sent:sent + 1])  # one byte at a time
                answers.append(client.recv(4096))  # an answer or the end: the gateway let go
                closed_at[n] = time.monotonic()
            except BlockingIOError:
                pass
            except OSError:
                closed_at[n] = time.monotonic()
        sent += 1
        time.sleep(0.05)
    for client in slow:
        client.close()
    assert len(closed_at) == len(slow)
    assert min(closed_at.values()) - opened >= HEADER_TIMEOUT  # none before its deadline
    assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in answers) and answers
    # A client that sends its request at once is served.
    assert httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {active_key}"}).status_code == 200


def test_a_kept_alive_connection_serves_requests_spaced_beyond_the_deadline(
        gateway: Gateway, active_key: str) -> None:
    """The deadline runs from a request's first byte: idling between requests on one connection is not trickling."""
    client = socket.create_connection(("127.0.0.1", gateway.port))
    request = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {active_key}\r\n\r\n".encode()
    statuses = []
    for _ in range(2):
        client.sendall(request)
        statuses.append(read_answer(client)[0])
        time.sleep(HEADER_TIMEOUT * 1.5)
    client.close()
    assert statuses == [200, 200]
