"""The fault tests' own parts: a redis-server of a test's own, never the machine's."""
from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests import waiting
from tests.servers import free_port


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """A redis-server on ``port`` that keeps nothing on disk (so a restart starts it empty), once it answers."""
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    waiting.until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
                  == b"PONG", "redis-server to start", interval=0.05)
    return server


@pytest.fixture
def private_redis() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    server = start_redis(port)
    yield server, port
    server.send_signal(signal.SIGCONT)
    server.kill()
    server.wait()


