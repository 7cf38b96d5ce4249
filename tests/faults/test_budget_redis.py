"""A budget holds through Redis killed mid-budget and restarted empty: the rows are the truth it is rebuilt from.

The test's own ``redis-server`` (never the machine's) is killed with SIGKILL after two of
five allowed requests; one request is answered while it is away (the process keeps the
totals itself, read from the rows); a new, empty redis-server then takes its port. Every
request is counted: exactly five are let in, the sixth is refused, each leaves one row.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from plumbing.sharedstate import BREAKER_SECONDS
from tests import waiting
from tests.conftest import wait_for_logs
from tests.faults.conftest import start_redis
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

USED = {"prompt_tokens": 200, "completion_tokens": 100, "total_tokens": 300}


@pytest.fixture
def redis_servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for server in started:
        server.kill()
        server.wait()


@pytest.mark.processes
def test_redis_killed_and_restarted_empty_mid_budget_still_holds_the_total(
        start_gateway: Callable[..., Gateway], scripted: MockUpstream,
        redis_servers: list[subprocess.Popen[bytes]], private_redis: tuple[subprocess.Popen[bytes], int]) -> None:
    first, port = private_redis
    gateway = start_gateway(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    Upstream.objects.create(name="local", base_url=scripted.base_url)
    scripted.script({"chunks": [{"text": "hi"}, {"finish": "stop"}, {"usage": USED}]})
    key, secret = ClientKey.objects.create_key("ci", token_budget=1500, budget_period="total")
    account = f"cgw:budget:k{key.pk}:total"

    def post() -> int:
        return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                          timeout=30).status_code

    assert [post(), post()] == [200, 200]  # 600 of 1,500, in Redis
    waiting.until(lambda: redis.Redis(port=port).hget(account, "t") == b"600", "the settles in Redis", 10)
    first.kill()
    first.wait()
    assert post() == 200  # Redis away: 900, counted by the process from the rows
    redis_servers.append(start_redis(port))  # back, empty
    time.sleep(BREAKER_SECONDS + 0.5)  # the breaker lets the next call try Redis again
    codes = [post() for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # 1,200 and 1,500: then nothing is left
    assert "the shared cache (Redis) answers again" in gateway.log()
    assert len(scripted.requests()) == 5
    rows = wait_for_logs(7)
    assert [r.status for r in rows] == [200] * 5 + [429] * 2
    assert sum(r.input_tokens + r.output_tokens for r in rows if r.status == 200) == 1500
    assert [r.error_type for r in rows if r.status == 429] == ["insufficient_quota"] * 2
    rebuilt = redis.Redis(port=port).hgetall(account)  # rebuilt from the rows (900), then two settles
    assert (rebuilt[b"t"], rebuilt[b"rt"]) == (b"1500", b"0")
