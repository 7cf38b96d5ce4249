"""The audit row's timeline and, with GATEWAY_LOG_BODIES=true, its redacted bodies (real daphne, real mock)."""
from __future__ import annotations

from collections.abc import Callable

import httpx

from logs.audit.exchange import BODY_CAPTURE_BYTES
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "my key is sk-live-abcdefghijklmnopqrstuvwx"}]}


def test_the_row_times_the_upstream_answer_between_receipt_and_first_byte(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                        headers={"authorization": f"Bearer {active_key}"})
    row = wait_for_log(answer.headers["x-request-id"])
    assert 0 < row.connected_ms <= row.ttfb_ms <= row.duration_ms


def test_bodies_are_not_kept_unless_asked(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                          active_key: str) -> None:
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                        headers={"authorization": f"Bearer {active_key}"})
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.request_body, row.response_body) == ("", "")


def test_bodies_are_kept_redacted_with_log_bodies_on(start_gateway: Callable[..., Gateway], scripted: MockUpstream,
                                                     chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(GATEWAY_LOG_BODIES="true")
    scripted.script({"chunks": [{"text": "the upstream key is sk-upstream-SECRET-123"}, {"finish": "stop"}]})
    answer = httpx.post(f"{server.url}/v1/chat/completions", json={**CHAT, "stream": True},
                        headers={"authorization": f"Bearer {active_key}"})
    assert "sk-upstream-SECRET-123" in answer.text  # the client gets the answer as it was
    row = wait_for_log(answer.headers["x-request-id"])
    assert '"model":"mock-model"' in row.request_body and "my key is [redacted]" in row.request_body
    assert "the upstream key is [redacted]" in row.response_body and "data: [DONE]" in row.response_body
    assert active_key not in row.request_body


def test_captured_bodies_are_cut_at_the_limit(start_gateway: Callable[..., Gateway], scripted: MockUpstream,
                                              chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(GATEWAY_LOG_BODIES="true")
    long = {**CHAT, "messages": [{"role": "user", "content": "x" * (BODY_CAPTURE_BYTES + 500)}]}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=long,
                        headers={"authorization": f"Bearer {active_key}"})
    row = wait_for_log(answer.headers["x-request-id"])
    assert row.request_body.endswith(f"… [cut: first {BODY_CAPTURE_BYTES} of {row.request_bytes} bytes kept]")
    assert '"choices"' in row.response_body  # a non-streaming answer, whole
