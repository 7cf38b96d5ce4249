"""Rate limits per client key: the 429 a real server answers once a key is spent (the rules: tests/plumbing)."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def test_it_answers_429_with_retry_after_once_the_key_is_spent(gateway: Gateway, scripted: MockUpstream,
                                                               chat_upstream: Upstream, active_key: str) -> None:
    ClientKey.objects.filter(name="alice").update(rate_limit="2/h")
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    headers = {"authorization": f"Bearer {active_key}"}
    answers = [httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "2" for a in answers)
    refused = answers[2]
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(scripted.requests()) == 2
    row = wait_for_log(refused.headers["x-request-id"])
    assert (row.outcome, row.status, row.key_name) == ("rejected", 429, "alice")


def test_the_default_limit_applies_to_keys_without_their_own(start_gateway, active_key: str) -> None:
    server = start_gateway(GATEWAY_RATE_LIMIT="1/h")
    headers = {"authorization": f"Bearer {active_key}"}
    codes = [httpx.post(f"{server.url}/v1/responses", json={"model": "none", "input": "x"}, headers=headers)
             for _ in range(2)]
    assert [c.status_code for c in codes] == [404, 429]  # the first got past the limit, to routing


def test_a_bad_default_limit_stops_the_server_at_start(start_gateway) -> None:
    with pytest.raises(RuntimeError, match="GATEWAY_RATE_LIMIT"):
        start_gateway(GATEWAY_RATE_LIMIT="lots")
