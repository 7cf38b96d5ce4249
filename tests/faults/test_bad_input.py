"""Faults a client causes (issue 12): bad input gets a clear error or is cleaned, never a 500, and every row is kept.

Each test counts what it sent, what was answered and what was recorded, through a real
daphne gateway and the mock upstream, on SQLite and (``-m database``) on PostgreSQL,
which refuses a NUL in text.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from logs.models import RequestLog
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"x": value}}
    return value


def test_a_non_ascii_request_id_is_replaced_not_a_500(gateway: Gateway, scripted: MockUpstream,
                                                      chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    response = httpx.post(f"{gateway.url}/v1/responses", timeout=30,
                          headers={"authorization": f"Bearer {active_key}", "x-request-id": "héllo-☃".encode()},
                          json={"model": "m", "input": "hi"})
    assert response.status_code == 200, response.text
    given = response.headers["x-request-id"]
    assert given.startswith("req_") and given.isascii()
    assert scripted.requests()[-1]["headers"]["x-request-id"] == given
    [row] = wait_for_logs(1)
    assert row.request_id == given


def test_json_nested_past_the_limit_is_a_400_naming_where(gateway: Gateway, scripted: MockUpstream,
                                                          chat_upstream: Upstream, active_key: str) -> None:
    tool = {"type": "function", "name": "deep", "parameters": nested(300)}
    response = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"},
                          json={"model": "m", "input": "hi", "tools": [tool]}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "nesting_too_deep" and error["param"].startswith("tools[0].parameters.properties.x")
    assert scripted.requests() == []
    ok = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"}, timeout=30,
                    json={"model": "m", "input": "hi", "tools": [{**tool, "parameters": nested(60)}]})
    assert ok.status_code == 200, ok.text  # well inside the limit: sent
    assert [row.status for row in wait_for_logs(2)] == [400, 200]


def test_rows_the_database_would_refuse_are_cleaned_and_take_no_other_row_with_them(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """20 requests end together, one with a NUL in its model name and one with a 500-character one: 20 rows."""
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    models = ["bad\u0000model", "m" * 500, *(f"model-{n}" for n in range(18))]

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {active_key}"}, timeout=30) as client:
            answers = await asyncio.gather(*(client.post(f"{gateway.url}/v1/responses",
                                                         json={"model": model, "input": "hi"}) for model in models))
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(send_all())
    assert statuses == [200] * 20
    rows = wait_for_logs(20)
    assert len(rows) == 20
    recorded = {row.model for row in rows}
    assert "bad\ufffdmodel" in recorded and "m" * 200 in recorded


def test_a_bridged_streams_row_counts_the_bytes_the_client_was_sent(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "Hello"}, {"text": " world"}, {"finish": "stop"}]})
    with httpx.stream("POST", f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"},
                      json={"model": "m", "input": "hi", "stream": True}, timeout=30) as response:
        received = len(response.read())
    [row] = wait_for_logs(1)
    assert row.response_bytes == received > 0


def test_metrics_need_the_token_when_one_is_set(start_gateway: Callable[..., Gateway]) -> None:
    guarded = start_gateway(GATEWAY_METRICS_TOKEN="scrape-me")
    refused = httpx.get(f"{guarded.url}/metrics")
    assert refused.status_code == 401 and "scrape-me" not in refused.text
    assert "GATEWAY_METRICS_TOKEN" in refused.json()["error"]["message"]
    assert httpx.get(f"{guarded.url}/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
    allowed = httpx.get(f"{guarded.url}/metrics", headers={"authorization": "Bearer scrape-me"})
    assert allowed.status_code == 200 and "gateway_requests_total" in allowed.text
    assert not RequestLog.objects.exists()  # operators' probes leave no audit row
