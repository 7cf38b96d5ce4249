"""Clients that stop reading (issue 12): the gateway stops reading the upstream; its memory stays bounded.

Five clients ask for a 40 MB streamed answer and read none of it. Without back-pressure
the gateway read all five answers from the upstream into Twisted's write buffers (RSS
77 → 1,068 MB); with it, each stream holds about 64 KiB in the process
(plumbing/patches/backpressure.py).
"""
from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests import waiting
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CHUNK_TEXT = "x" * 4000
REPEAT = 10_000  # 10,000 chunks of about 4.1 KB: a 40 MB answer
MIB = 1024 * 1024


def rss(pid: int) -> int:
    """The process's resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def settled_rss(pid: int, rounds: int = 40) -> int:
    """RSS once it stops moving (two samples 0.25 s apart within 1 MiB), at most ``rounds`` samples."""
    last = rss(pid)
    for _ in range(rounds):
        time.sleep(0.25)
        now = rss(pid)
        if abs(now - last) < MIB:
            return now
        last = now
    return last


def request_bytes(gateway: Gateway, secret: str, path: str, body: dict[str, object]) -> bytes:
    payload = orjson.dumps(body)
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload


def whole_answer(gateway: Gateway, secret: str, path: str, body: dict[str, object]) -> int:
    """Read one full answer (it proves the answer is 40 MB and warms the process up); return its size."""
    with httpx.stream("POST", f"{gateway.url}{path}", json=body, timeout=60,
                      headers={"authorization": f"Bearer {secret}"}) as whole:
        received = sum(len(part) for part in whole.iter_raw())
    assert whole.status_code == 200 and received > REPEAT * len(CHUNK_TEXT)
    return received


def release(pid: int, stalled: list[socket.socket]) -> tuple[int, int, list]:
    """RSS with the stalled clients, then close them: RSS after, and the rows (the whole answer's first)."""
    during = settled_rss(pid)
    for client in stalled:
        client.close()
    rows = wait_for_logs(6, timeout=30)
    return during, settled_rss(pid), rows


def assert_little_held(before: int, during: int, after: int, received: int, rows: list, outcome: set) -> None:
    growth = during - before
    assert growth < 50 * MIB, f"RSS grew {growth / MIB:.0f} MiB with 5 stalled clients"
    assert after - before < 50 * MIB
    assert len(rows) == 6
    assert rows[0].outcome == "ok" and rows[0].response_bytes == received
    stalled_rows = rows[1:]
    assert {(row.transport, row.outcome) for row in stalled_rows} == outcome
    # Each stalled stream was sent little of its answer before the gateway stopped reading the upstream.
    assert all(row.response_bytes < received // 4 for row in stalled_rows), [r.response_bytes for r in stalled_rows]


@pytest.fixture
def long_answer(scripted: MockUpstream, chat_upstream: Upstream) -> MockUpstream:
    scripted.script({"chunks": [{"text": CHUNK_TEXT}, {"finish": "stop"}], "repeat": REPEAT})
    return scripted


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "mock-model", "stream": True,
                              "messages": [{"role": "user", "content": "long"}]}),
    ("/v1/responses", {"model": "mock-model", "stream": True, "input": "long"}),
], ids=["chat-relayed", "responses-bridged"])
def test_five_clients_that_stop_reading_hold_little_memory_and_a_reading_one_gets_everything(
        start_gateway: Callable[..., Gateway], active_key: str, long_answer: MockUpstream,
        path: str, body: dict[str, object]) -> None:
    gateway = start_gateway(GATEWAY_ROUTING_TTL="60")
    pid = gateway.process.pid
    received = whole_answer(gateway, active_key, path, body)
    before = settled_rss(pid)

    stalled = []
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", gateway.port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(request_bytes(gateway, active_key, path, body))
        stalled.append(client)
    for client in stalled:  # each answer has begun: read its status line, then nothing more
        assert client.recv(15) == b"HTTP/1.1 200 OK"
    during, after, rows = release(pid, stalled)
    assert_little_held(before, during, after, received, rows, {("http", "client_disconnected")})


def websocket_create(gateway: Gateway, secret: str, message: dict[str, object]) -> socket.socket:
    """A raw WebSocket that sends one response.create, then reads nothing but the upgrade's answer.

    A WebSocket library would read in the background; this client, like a stuck one, does not.
    """
    client = socket.create_connection(("127.0.0.1", gateway.port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall((f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {secret}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += client.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload, mask = orjson.dumps(message), os.urandom(4)
    size = len(payload)  # a client frame: FIN + text, masked, its length in the fewest bytes (RFC 6455)
    frame = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + struct.pack("!H", size)
    frame += mask
    client.sendall(frame + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return client


def test_websocket_clients_that_stop_reading_hold_little_memory(
        start_gateway: Callable[..., Gateway], active_key: str, long_answer: MockUpstream) -> None:
    """The same over the Responses WebSocket: each event is a message, and sending one waits for the client."""
    gateway = start_gateway(GATEWAY_ROUTING_TTL="60")
    pid = gateway.process.pid
    body = {"model": "mock-model", "stream": True, "input": "long"}
    received = whole_answer(gateway, active_key, "/v1/responses", body)
    before = settled_rss(pid)
    stalled = [websocket_create(gateway, active_key, {"type": "response.create", **body, "store": False})
               for _ in range(5)]
    waiting.until(lambda: len(long_answer.requests()) >= 6, "every stalled socket's answer to be under way")
    assert len(long_answer.requests()) == 6
    time.sleep(3)  # without back-pressure, each whole 202 MB answer is pushed into Twisted in less than this
    during, after, rows = release(pid, stalled)
    assert_little_held(before, during, after, received, rows, {("websocket", "client_disconnected")})
