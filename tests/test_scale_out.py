"""Several gateway processes sharing one database and one Redis: the production shape.

Runs against the machine's Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/15)
over real connections, and against PostgreSQL too when the suite runs with DATABASE_URL.
"""
from __future__ import annotations

import json
import re
from typing import Any

import httpx
import redis

from tests import waiting
from tests.conftest import REDIS_URL, wait_for_logs
from tests.servers import Gateway, MockUpstream, admin_session, check_admin_edit_reaches
from upstreams.models import ClientKey, Upstream


def test_the_rate_limit_budget_is_shared_by_every_process(pair: tuple[Gateway, Gateway], active_key: str) -> None:
    ClientKey.objects.filter(name="alice").update(rate_limit="3/h")
    a, b = pair
    headers = {"authorization": f"Bearer {active_key}"}
    codes = [httpx.post(f"{server.url}/v1/responses", json={"model": "unserved", "input": "x"}, headers=headers)
             .status_code for server in (a, b, a, b)]
    assert codes == [404, 404, 404, 429]
    assert len(wait_for_logs(4)) == 4  # every process writes to the one audit table


def test_an_admin_edit_in_one_process_is_used_by_the_other(pair: tuple[Gateway, Gateway], scripted: MockUpstream,
                                                           active_key: str) -> None:
    a, b = pair
    check_admin_edit_reaches(edited=a, asked=b, secret=active_key, scripted=scripted)


def test_a_cool_down_seen_by_one_process_is_shown_by_the_others_admin(pair: tuple[Gateway, Gateway],
                                                                      active_key: str) -> None:
    a, b = pair
    Upstream.objects.create(name="broken", base_url="http://127.0.0.1:9/v1")
    headers = {"authorization": f"Bearer {active_key}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert httpx.post(f"{a.url}/v1/chat/completions", json=body, headers=headers).status_code == 502
    listing = admin_session(b).get("/admin/upstreams/upstream/").text
    assert re.search(r"chat/completions \(\d+s\)", listing)


def test_metrics_from_any_process_count_the_requests_of_all(pair: tuple[Gateway, Gateway], active_key: str) -> None:
    a, b = pair
    headers = {"authorization": f"Bearer {active_key}"}
    for server in (a, b, b):
        httpx.post(f"{server.url}/v1/responses", json={"model": "unserved", "input": "x"}, headers=headers)
    a.settle()
    b.settle()
    text = httpx.get(f"{a.url}/metrics").text
    assert 'gateway_requests_total{endpoint="responses",mode="-",status="404",upstream="-"} 3.0' in text


def test_requests_reuse_the_processes_redis_connections(pair: tuple[Gateway, Gateway], active_key: str) -> None:
    """Each request touches the cache twice (rate limit, cool-downs); that must not mean a new connection."""
    a, b = pair
    ClientKey.objects.filter(name="alice").update(rate_limit="1000/m")  # a counter per request
    Upstream.objects.create(name="down", base_url="http://127.0.0.1:9/v1")  # cool-down reads and writes
    headers = {"authorization": f"Bearer {active_key}"}
    body = {"model": "m", "input": "x"}
    redis_server = redis.Redis.from_url(REDIS_URL)

    database = str(redis_server.connection_pool.connection_kwargs.get("db", 0))

    def connections() -> int:  # this test's database only: other xdist workers use the server too
        return sum(1 for client in redis_server.client_list() if client.get("db") == database)

    for server in (a, b):  # the processes' pools and channel layers connect once
        httpx.post(f"{server.url}/v1/responses", json=body, headers=headers)
    before = connections()
    for _ in range(20):
        for server in (a, b):
            assert httpx.post(f"{server.url}/v1/responses", json=body, headers=headers).status_code == 502
    assert connections() - before <= 2


def test_a_response_stored_by_one_process_is_continued_by_the_other_at_once(
        pair: tuple[Gateway, Gateway], scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """Stored before its last event left process A: process B continues it the moment the stream ends."""
    a, b = pair
    headers = {"authorization": f"Bearer {active_key}"}
    scripted.script({"chunks": [{"text": "Paris."}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Lyon."}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Marseille."}, {"finish": "stop"}]})
    with httpx.stream("POST", f"{a.url}/v1/responses", headers=headers, timeout=30,
                      json={"model": "m", "input": "Capital?", "stream": True}) as first:
        lines = [line for line in first.iter_lines() if line.startswith("data:")]
    first_id = json.loads(lines[-1][5:])["response"]["id"]
    assert httpx.get(f"{b.url}/v1/responses/{first_id}", headers=headers).json()["id"] == first_id
    second = httpx.post(f"{b.url}/v1/responses", headers=headers, timeout=30,
                        json={"model": "m", "input": "Second city?", "previous_response_id": first_id})
    assert second.status_code == 200, second.text
    assert scripted.requests()[-1]["body"]["messages"] == [
        {"role": "user", "content": "Capital?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Second city?"}]
    # B resolves A's output item by reference, lists the input items, and deletes; A sees it gone.
    answer_id = json.loads(lines[-1][5:])["response"]["output"][0]["id"]
    third = httpx.post(f"{b.url}/v1/responses", headers=headers, timeout=30, json={
        "model": "m", "input": [{"type": "item_reference", "id": answer_id}, {"role": "user", "content": "And?"}]})
    assert third.status_code == 200, third.text
    assert scripted.requests()[-1]["body"]["messages"] == [
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And?"}]
    items = httpx.get(f"{b.url}/v1/responses/{second.json()['id']}/input_items", headers=headers).json()
    assert [item["content"][0]["text"] for item in items["data"]] == ["Second city?"]
    assert httpx.delete(f"{b.url}/v1/responses/{first_id}", headers=headers).json()["deleted"] is True
    assert httpx.get(f"{a.url}/v1/responses/{first_id}", headers=headers).status_code == 404


def test_a_background_response_on_one_process_is_resumed_polled_and_cancelled_from_the_other(
        pair: tuple[Gateway, Gateway], scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """Process B follows A's running response live over the channel layer (Redis), with no sleep, then ends it."""
    a, b = pair
    headers = {"authorization": f"Bearer {active_key}"}
    gated = {"chunks": [{"text": "Hello"}, {"text": " world"}, {"finish": "stop"}], "gate": True}
    scripted.script(gated)

    def events(text: str) -> list[dict[str, Any]]:
        return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]

    # 1. Resumed live on B while A answers; the end comes through B too.
    with httpx.stream("POST", f"{a.url}/v1/responses", headers=headers, timeout=30,
                      json={"model": "m", "input": "hi", "background": True, "stream": True}) as started:
        seen: list[dict[str, Any]] = []
        for line in started.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
            if seen and seen[-1]["type"] == "response.output_text.delta":
                break
    response_id = seen[0]["response"]["id"]
    assert httpx.get(f"{b.url}/v1/responses/{response_id}", headers=headers).json()["status"] == "in_progress"
    with httpx.stream("GET", f"{b.url}/v1/responses/{response_id}?stream=true&starting_after=1",
                      headers=headers, timeout=30) as resumed:
        assert resumed.status_code == 200
        scripted.release()
        rest = events(resumed.read().decode())
    assert rest[0]["sequence_number"] == 2 and rest[-1]["type"] == "response.completed"
    assert rest[:len(seen) - 2] == seen[2:]  # what A had sent, then the rest as it came
    final = httpx.get(f"{b.url}/v1/responses/{response_id}", headers=headers).json()
    assert final == rest[-1]["response"] and final["output"][0]["content"][0]["text"] == "Hello world"

    # 2. Cancelled from B while A answers.
    scripted.script(gated)
    queued = httpx.post(f"{a.url}/v1/responses", headers=headers, timeout=30,
                        json={"model": "m", "input": "again", "background": True}).json()
    waiting.until(lambda: httpx.get(f"{b.url}/v1/responses/{queued['id']}", headers=headers).json()["status"]
                  == "in_progress", "the upstream to be asked")
    cancelled = httpx.post(f"{b.url}/v1/responses/{queued['id']}/cancel", headers=headers, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert httpx.get(f"{a.url}/v1/responses/{queued['id']}", headers=headers).json()["status"] == "cancelled"
