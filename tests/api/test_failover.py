"""Failover before the first byte, and the cool-down of upstreams that keep failing."""
from __future__ import annotations

import httpx
import pytest
from django.test import Client

from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream, free_port
from upstreams.models import Upstream


def wait_for_log_count(count: int) -> int:
    return len(wait_for_logs(count))


CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
OK = {"chunks": [{"text": "from the backup"}, {"finish": "stop"}]}


def post(gateway: Gateway, key: str, path: str = "/v1/chat/completions", body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json=body or CHAT, headers={"authorization": f"Bearer {key}"})


def test_a_refused_connection_fails_over_to_the_next_upstream(gateway: Gateway, scripted: MockUpstream,
                                                              active_key: str) -> None:
    Upstream.objects.create(name="dead", base_url="http://127.0.0.1:9/v1", priority=10)
    Upstream.objects.create(name="backup", base_url=scripted.base_url, priority=1)
    scripted.script(OK)
    answer = post(gateway, active_key)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "from the backup"
    assert wait_for_log(answer.headers["x-request-id"]).upstream_name == "backup"


def test_a_429_or_5xx_fails_over_but_a_400_does_not(gateway: Gateway, scripted: MockUpstream,
                                                    active_key: str) -> None:
    Upstream.objects.create(name="first", base_url=scripted.base_url, priority=10)
    Upstream.objects.create(name="second", base_url=scripted.url, priority=1)
    scripted.script({"status": 503, "body": "busy"}, OK)
    assert post(gateway, active_key).json()["choices"][0]["message"]["content"] == "from the backup"
    scripted.script({"status": 400, "body": {"error": {"message": "bad", "type": "invalid_request_error"}}}, OK)
    refused = post(gateway, active_key)
    assert refused.status_code == 400 and len(scripted.requests()) == 1


def test_a_bridged_upstream_can_back_up_a_passthrough_one(gateway: Gateway, scripted: MockUpstream,
                                                          active_key: str) -> None:
    Upstream.objects.create(name="responses-dead", base_url="http://127.0.0.1:9", api="responses",
                            priority=10)
    Upstream.objects.create(name="chat-backup", base_url=scripted.base_url)
    scripted.script(OK)
    answer = post(gateway, active_key, "/v1/responses", {"model": "m", "input": "hi"})
    assert answer.json()["output"][0]["content"][0]["text"] == "from the backup"
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.upstream_name, row.mode) == ("chat-backup", "bridge")


def test_attempts_are_bounded_and_the_last_error_is_reported(start_gateway, active_key: str) -> None:
    for n in range(4):
        Upstream.objects.create(name=f"dead-{n}", base_url=f"http://127.0.0.1:{9 + n}/v1", priority=n)
    server = start_gateway(GATEWAY_MAX_ATTEMPTS="2")
    answer = post(server, active_key)
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_unavailable"
    assert server.log().count("failed (upstream_unavailable)") == 2


def test_an_upstream_that_keeps_failing_cools_down_and_is_tried_last(gateway: Gateway, scripted: MockUpstream,
                                                                     active_key: str) -> None:
    Upstream.objects.create(name="flaky", base_url=scripted.base_url, priority=10)
    Upstream.objects.create(name="steady", base_url=scripted.url, priority=1)
    # flaky fails three times (steady answers each time), then it is skipped: steady answers first.
    scripted.script({"status": 500, "body": "x"}, OK, {"status": 500, "body": "x"}, OK, {"status": 500, "body": "x"},
                    OK, OK)
    for _ in range(4):
        assert post(gateway, active_key).status_code == 200
    # Seven upstream requests for four answers: the fourth went straight to steady.
    assert [r["path"] for r in scripted.requests()].count("/v1/chat/completions") == 7
    assert wait_for_log_count(4) == 4


def test_a_port_nobody_listens_on_is_named_in_the_error(gateway: Gateway, active_key: str) -> None:
    """Which upstream, and where: a typo in a port is found from the error alone (never the key)."""
    dead = free_port()
    Upstream.objects.create(name="typo", base_url=f"http://127.0.0.1:{dead}/v1", api_key="sk-upstream-SECRET-789")
    answer = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi"}, timeout=30,
                        headers={"authorization": f"Bearer {active_key}"})
    message = answer.json()["error"]["message"]
    assert answer.status_code == 502 and f"upstream 'typo' at 127.0.0.1:{dead}" in message
    assert "SECRET" not in answer.text


UPSTREAM_ERROR = '{"error":{"message":"n_ctx exceeded","type":"invalid_request_error","param":null,"code":400},"x":1}'


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"model": "m", "input": "hi"}),
], ids=["chat-relayed", "responses-bridged"])
def test_an_upstreams_openai_shaped_error_comes_back_byte_for_byte(
        gateway: Gateway, active_key: str, scripted: MockUpstream, chat_upstream: Upstream,
        path: str, body: dict[str, object]) -> None:
    scripted.script({"status": 400, "body": UPSTREAM_ERROR, "content_type": "application/json"})
    answer = httpx.post(f"{gateway.url}{path}", json=body, headers={"authorization": f"Bearer {active_key}"})
    assert answer.status_code == 400 and answer.content == UPSTREAM_ERROR.encode()  # "code": 400 stays a number
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.status, row.error_type, row.error_message) == (400, "400", "n_ctx exceeded")


def test_every_failed_attempt_is_on_the_row_its_page_its_filters_and_its_upstreams_error_rate(
        gateway: Gateway, scripted: MockUpstream, active_key: str, admin_client: Client) -> None:
    dead = free_port()
    Upstream.objects.create(name="dead", base_url=f"http://127.0.0.1:{dead}/v1", priority=10)
    Upstream.objects.create(name="backup", base_url=scripted.base_url, priority=1)
    scripted.script({"chunks": [{"text": "from backup"}, {"finish": "stop"}]})
    answer = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi"}, timeout=30,
                        headers={"authorization": f"Bearer {active_key}"})
    assert answer.status_code == 200 and "from backup" in answer.text
    row = wait_for_log(answer.headers["x-request-id"])
    assert row.upstream_name == "backup" and row.failed_over == ",dead,"
    [attempt] = row.attempts
    assert (attempt["upstream"], attempt["at"], attempt["code"], attempt["status"]) == (
        "dead", f"127.0.0.1:{dead}", "upstream_unavailable", 502)
    assert attempt["ms"] >= 0

    page = " ".join(admin_client.get(f"/logs/{row.request_id}/").content.decode().split())
    assert "failed over from <b>dead</b> (upstream_unavailable, 502) to <b>backup</b>, which answered" in page
    assert f"127.0.0.1:{dead}" in page and "upstream_unavailable" in page
    for query in ("upstream=dead", "upstream=backup", "failover=1", "upstream=dead&outcome=upstream_error"):
        assert row.request_id in admin_client.get(f"/logs/?{query}").content.decode(), query
    assert row.request_id not in admin_client.get("/logs/?upstream=backup&outcome=upstream_error").content.decode()
    overview = admin_client.get("/logs/stats/?format=json").json()
    # The upstream that never answered: one request, one failure, one failover away from it.
    upstreams = {u["name"]: (u["requests"], u["failed"], u["failovers"]) for u in overview["upstreams"]}
    assert upstreams == {"dead": (1, 1, 1), "backup": (1, 0, 0)}
    assert (overview["totals"]["failovers"], overview["totals"]["upstream_failed"]) == (1, 0)


def test_a_request_whose_only_upstream_failed_is_counted_once_and_is_no_failover(
        gateway: Gateway, active_key: str, admin_client: Client) -> None:
    dead = free_port()
    Upstream.objects.create(name="ghost", base_url=f"http://127.0.0.1:{dead}/v1")
    answer = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi"}, timeout=30,
                        headers={"authorization": f"Bearer {active_key}"})
    assert answer.status_code == 502
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.upstream_name, row.failed_over, [a["upstream"] for a in row.attempts]) == ("ghost", "", ["ghost"])
    overview = admin_client.get("/logs/stats/?format=json").json()
    assert [(u["name"], u["requests"], u["failed"], u["failovers"]) for u in overview["upstreams"]] == [
        ("ghost", 1, 1, 0)]
    assert (overview["totals"]["failovers"], overview["totals"]["upstream_failed"]) == (0, 1)
    assert row.request_id not in admin_client.get("/logs/?failover=1").content.decode()
    page = " ".join(admin_client.get(f"/logs/{row.request_id}/").content.decode().split())
    assert "ghost could not be reached; no other upstream took the request." in page
    assert "failed over" not in page
