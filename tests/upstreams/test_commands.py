"""Management commands and the environment bootstrap."""
from __future__ import annotations

import io
import subprocess
import sys

import httpx
import pytest
from django.core.management import call_command
from django.test import override_settings

from tests.servers import ROOT, MockUpstream
from upstreams.bootstrap import sync_env_upstream
from upstreams.models import ClientKey, Upstream


@pytest.mark.django_db
def test_createapikey_prints_a_working_key_on_the_last_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("createapikey", "ci-bot", "--rate-limit", "60/m", stdout=out, stderr=err)
    secret = out.getvalue().strip().splitlines()[-1]
    key = ClientKey.objects.for_secret(secret)
    assert key is not None and (key.name, key.rate_limit) == ("ci-bot", "60/m")
    assert secret not in err.getvalue()


@pytest.mark.processes
def test_mockupstream_refuses_an_unknown_scenario() -> None:
    result = subprocess.run([sys.executable, "manage.py", "mockupstream", "--scenario", "nope", "--port", "1"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "invalid choice" in result.stderr


@pytest.mark.processes
@pytest.mark.parametrize("scenario", ["text", "tools", "tools5"])
def test_mockupstream_serves_the_seed_scenarios(scenario: str) -> None:
    server = MockUpstream(scenario)
    try:
        body = {"model": "m", "messages": [], "stream": False}
        message = httpx.post(f"{server.base_url}/chat/completions", json=body).json()["choices"][0]["message"]
    finally:
        server.stop()
    if scenario == "text":
        assert message["content"] == "Hello world! 你好世界！"
    else:
        assert len(message["tool_calls"]) == {"tools": 2, "tools5": 5}[scenario]


@pytest.mark.django_db
@override_settings(UPSTREAM_BASE_URL="http://127.0.0.1:7000", UPSTREAM_API="responses",
                   UPSTREAM_API_KEY="sk-env-key")
def test_env_upstream_is_synced_idempotently_keeping_admin_edits() -> None:
    sync_env_upstream()
    Upstream.objects.filter(name="default").update(priority=7)
    sync_env_upstream()
    upstream = Upstream.objects.get()
    assert (upstream.name, upstream.api_base, upstream.api) == ("default", "http://127.0.0.1:7000/v1", "responses")
    assert (upstream.api_key, upstream.priority, upstream.is_catch_all) == ("sk-env-key", 7, True)


def test_a_server_started_with_upstream_base_url_serves_it(start_gateway, scripted: MockUpstream,
                                                           active_key: str) -> None:
    server = start_gateway(UPSTREAM_BASE_URL=scripted.url)
    scripted.script({"chunks": [{"text": "from env"}, {"finish": "stop"}]})
    answer = httpx.post(f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {active_key}"},
                        json={"model": "any", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.json()["choices"][0]["message"]["content"] == "from env"
    assert Upstream.objects.get().name == "default"
