"""Secrets (upstream keys, client keys) never reach logs, audit rows or error messages."""
from __future__ import annotations

import httpx
from django.core import serializers

from logs.models import RequestLog
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def test_no_secret_in_audit_rows_logs_or_errors(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                                 active_key: str) -> None:
    scripted.script(
        {"chunks": [{"text": "ok"}, {"finish": "stop"}]},
        {"status": 401, "body": {"error": {"message": "bad upstream key", "type": "auth", "code": "invalid_api_key"}}},
    )
    good = {"authorization": f"Bearer {active_key}"}
    answers = [
        httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=good),
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=good),
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {active_key}x"}),
        httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{", headers=good),
    ]
    assert [a.status_code for a in answers] == [200, 401, 401, 400]
    rows = wait_for_logs(4)
    assert len(rows) == 4
    dumped = serializers.serialize("json", RequestLog.objects.all())
    logs = gateway.log()
    secrets = [active_key, active_key[len("sk-cgw-"):], chat_upstream.api_key]
    for secret in secrets:
        assert secret not in dumped
        assert secret not in logs
        assert all(secret not in a.text for a in answers)


def test_upstream_key_reaches_the_upstream_but_not_the_log_or_audit_rows(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """The key is decrypted for the upstream only; requests that succeed and fail leave no trace of it."""
    upstream_key = chat_upstream.api_key
    scripted.script(
        {"chunks": [{"text": "ok"}, {"finish": "stop"}]},
        {"chunks": [{"text": "bridged"}, {"finish": "stop"}]},
        # Some servers echo the key they refused; the audit row must not keep it.
        {"status": 500, "body": {"error": {"message": f"key {upstream_key} is suspended", "type": "server_error"}}},
        {"status": 401, "body": {"error": {"message": "bad upstream key", "code": "invalid_api_key"}}},
    )
    good = {"authorization": f"Bearer {active_key}"}
    statuses = [
        httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=good).status_code,
        httpx.post(f"{gateway.url}/v1/responses", json={"model": "mock-model", "input": "hi", "stream": True},
                   headers=good).status_code,
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=good).status_code,
        httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=good).status_code,
    ]
    assert statuses == [200, 200, 500, 401]
    sent = [r["headers"].get("authorization") for r in scripted.requests()]
    assert sent == [f"Bearer {upstream_key}"] * 4
    rows = wait_for_logs(4)
    gateway.settle()
    assert [r.status for r in rows] == statuses
    assert "[redacted]" in rows[2].error_message
    dumped = serializers.serialize("json", RequestLog.objects.all())
    assert upstream_key not in dumped and upstream_key not in gateway.log()


def test_an_upstream_error_that_echoes_its_key_reaches_the_client_scrubbed(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    echo = f"Incorrect API key provided: {chat_upstream.api_key}. You can find your key at example.com."
    scripted.script({"status": 401, "body": {"error": {"message": echo, "type": "invalid_request_error",
                                                       "code": "invalid_api_key"}}})
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                        headers={"authorization": f"Bearer {active_key}"})
    assert answer.status_code == 401
    message = answer.json()["error"]["message"]
    assert chat_upstream.api_key not in message
    assert message.startswith("Incorrect API key provided: [redacted]")


def test_a_key_put_in_a_query_string_never_reaches_the_access_log(gateway: Gateway, active_key: str) -> None:
    """daphne writes its access log itself, past the redacting filter: the query string is left out of it."""
    answer = httpx.get(f"{gateway.url}/v1/models?api_key={active_key}&x=1", headers={"authorization":
                                                                                        f"Bearer {active_key}"})
    assert answer.status_code == 200
    wait_for_logs(1)
    logs = gateway.log()
    assert '"GET /v1/models?…" 200' in logs
    assert active_key not in logs and active_key[len("sk-cgw-"):] not in logs
