"""What operators watch: one JSON log line per request, Prometheus metrics."""
from __future__ import annotations

import json

import httpx

from tests.conftest import wait_for_log
from tests.servers import MockUpstream
from upstreams.models import Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def test_each_request_writes_one_structured_log_line(start_gateway, scripted: MockUpstream,
                                                     chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(LOG_FORMAT="json")
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT,
                        headers={"authorization": f"Bearer {active_key}"})
    request_id = answer.headers["x-request-id"]
    wait_for_log(request_id)
    server.settle()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    [line] = [entry for entry in lines if entry.get("logger") == "gateway.requests"]
    assert line["request_id"] == request_id
    assert (line["key_name"], line["upstream_name"], line["model"], line["mode"]) == (
        "alice", "chat-mock", "mock-model", "passthrough")
    assert (line["status"], line["outcome"], line["input_tokens"], line["output_tokens"]) == (200, "ok", 5, 7)
    assert line["duration_ms"] >= line["ttfb_ms"] > 0
    assert active_key not in server.log()


def test_metrics_count_requests_tokens_errors_and_latency(start_gateway, scripted: MockUpstream,
                                                          chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway()
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]}, {"status": 500, "body": "down"})
    headers = {"authorization": f"Bearer {active_key}"}
    httpx.post(f"{server.url}/v1/responses", json={"model": "m", "input": "hi", "stream": True}, headers=headers)
    httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers)
    server.settle()
    text = httpx.get(f"{server.url}/metrics").text
    assert ('gateway_requests_total{endpoint="responses",mode="bridge",status="200",upstream="chat-mock"} 1.0'
            in text)
    assert ('gateway_requests_total{endpoint="chat/completions",mode="passthrough",status="500",'
            'upstream="chat-mock"} 1.0' in text)
    assert 'gateway_upstream_errors_total{kind="upstream_error",upstream="chat-mock"} 1.0' in text
    assert 'gateway_tokens_total{kind="input",upstream="chat-mock"} 5.0' in text
    assert 'gateway_ttfb_seconds_count{endpoint="responses",mode="bridge"} 1.0' in text
    assert "gateway_active_streams 0.0" in text
