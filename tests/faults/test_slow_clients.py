"""Clients that stop reading (issue 12): the gateway stops reading the upstream; its memory stays bounded.

Five clients ask for a 40 MB streamed answer and read none of it. Without back-pressure
the gateway read all five answers from the upstream into Twisted's write buffers (RSS
77 → 1,068 MB); with it, each stream holds about 64 KiB in the process
(plumbing/backpressure.py).
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

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
    # One full answer first: it proves the answer is 40 MB and warms the process up.
    with httpx.stream("POST", f"{gateway.url}{path}", json=body, timeout=60,
                      headers={"authorization": f"Bearer {active_key}"}) as whole:
        received = sum(len(part) for part in whole.iter_raw())
    assert whole.status_code == 200 and received > REPEAT * len(CHUNK_TEXT)
    before = settled_rss(pid)

    stalled = []
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", gateway.port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(request_bytes(gateway, active_key, path, body))
        stalled.append(client)
    for client in stalled:  # each answer has begun: read its status line, then nothing more
        assert client.recv(15) == b"HTTP/1.1 200 OK"
    during = settled_rss(pid)
    for client in stalled:
        client.close()
    rows = wait_for_logs(6, timeout=30)
    after = settled_rss(pid)

    growth = during - before
    assert growth < 50 * MIB, f"RSS grew {growth / MIB:.0f} MiB with 5 stalled clients"
    assert after - before < 50 * MIB
    assert len(rows) == 6
    assert rows[0].outcome == "ok" and rows[0].response_bytes == received
    stalled_rows = rows[1:]
    assert {row.outcome for row in stalled_rows} == {"client_disconnected"}
    # Each stalled stream was sent little of its answer before the gateway stopped reading.
    assert all(row.response_bytes < received // 4 for row in stalled_rows)
