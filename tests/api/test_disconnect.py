"""A client that hangs up mid-stream: the gateway cancels the upstream request at once and records it."""
from __future__ import annotations

import time

import httpx
import pytest

from tests import waiting
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

SLOW = {"chunks": [{"text": f"part {n} "} for n in range(50)] + [{"finish": "stop"}], "delay": 0.2}


@pytest.mark.parametrize(("path", "body"), [
    pytest.param("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, id="chat-passthrough"),
    pytest.param("/v1/responses", {"input": "hi"}, id="responses-bridge"),
])
def test_a_client_that_leaves_cancels_the_upstream_request(gateway: Gateway, scripted: MockUpstream,
                                                           chat_upstream: Upstream, active_key: str, path: str,
                                                           body: dict) -> None:
    scripted.script(SLOW)
    with httpx.stream("POST", f"{gateway.url}{path}", json={"model": "m", "stream": True, **body},
                      headers={"authorization": f"Bearer {active_key}"}, timeout=10) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_raw())
    left_at = time.time()
    # The bound: the mock upstream must see its connection closed within a second.
    disconnected_at = waiting.until(lambda: scripted.requests()[0]["disconnected_at"],
                                    "the upstream request to be cancelled (within 1 s)", timeout=1.0)
    assert disconnected_at - left_at < 1.0
    row = wait_for_log(request_id)
    assert row.outcome == "client_disconnected"
