"""Secrets (upstream keys, client keys) never reach logs, audit rows or error messages."""
from __future__ import annotations

import httpx
from django.core import serializers

from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import RequestLog, Upstream

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
