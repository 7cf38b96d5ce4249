"""A client key's scope (the models it may use) and its expiry, through real daphne.

A model outside the scope is answered as the OpenAI API answers a model a key cannot
use (404 ``model_not_found``), with nothing sent upstream; ``/v1/models`` and Codex's
catalog list only what the key may use; an expired key gets 401 ``invalid_api_key`` saying
so. Every refusal leaves its row, naming the key.
"""
from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.core.management import CommandError, call_command

from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream

TEXT = {"chunks": [{"text": "hi"}, {"finish": "stop"}]}


def post(gateway: Gateway, secret: str, model: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def test_a_key_uses_only_the_models_of_its_scope_and_lists_only_those(gateway: Gateway, scripted: MockUpstream) -> None:
    Upstream.objects.create(name="local", base_url=scripted.base_url, models="qwen3-coder qwen3-small llama-3")
    _, secret = ClientKey.objects.create_key("ci", models="qwen3-*")
    scripted.script(TEXT)
    assert post(gateway, secret, "qwen3-coder").status_code == 200
    refused = post(gateway, secret, "llama-3")
    assert refused.status_code == 404
    message = "The model 'llama-3' does not exist or you do not have access to it."
    assert refused.json() == {"error": {"message": message, "type": "invalid_request_error", "param": "model",
                                        "code": "model_not_found"}}
    assert [r["body"]["model"] for r in scripted.requests()] == ["qwen3-coder"]  # nothing sent for llama-3
    row = wait_for_log(refused.headers["x-request-id"])
    assert (row.key_name, row.outcome, row.error_type, row.upstream_name) == ("ci", "rejected", "model_not_found", "")

    auth = {"authorization": f"Bearer {secret}"}
    listed = httpx.get(f"{gateway.url}/v1/models", headers=auth, timeout=30).json()
    assert sorted(m["id"] for m in listed["data"]) == ["qwen3-coder", "qwen3-small"]
    codex = httpx.get(f"{gateway.url}/v1/models?client_version=0.171.0", headers=auth, timeout=30).json()
    assert sorted(m["slug"] for m in codex["models"]) == ["qwen3-coder", "qwen3-small"]


def test_an_expired_key_is_refused_saying_so_and_named_on_its_row(gateway: Gateway, scripted: MockUpstream) -> None:
    Upstream.objects.create(name="local", base_url=scripted.base_url)
    key, secret = ClientKey.objects.create_key("contractor", expires=datetime.now(UTC) + timedelta(hours=1))
    scripted.script(TEXT)
    assert post(gateway, secret, "m").status_code == 200
    ClientKey.objects.filter(pk=key.pk).update(expires=datetime(2026, 1, 31, tzinfo=UTC))
    refused = post(gateway, secret, "m")
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert (error["code"], error["message"]) == ("invalid_api_key",
                                                 "This client API key expired on 2026-01-31 00:00 UTC.")
    assert len(scripted.requests()) == 1
    row = wait_for_log(refused.headers["x-request-id"])
    assert (row.key_name, row.outcome, row.status) == ("contractor", "rejected", 401)


@pytest.mark.django_db
def test_createapikey_sets_the_scope_and_the_expiry() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("createapikey", "agents", "--models", "claude-* qwen3", "--expires", "2027-03-01", stdout=out,
                 stderr=err)
    key = ClientKey.objects.get(name="agents")
    assert (key.models, key.expires) == ("claude-* qwen3", datetime(2027, 3, 1, tzinfo=UTC))
    assert key.allows("claude-opus-4-5") and key.allows("qwen3") and not key.allows("qwen3-coder")
    assert ClientKey.objects.for_secret(out.getvalue().strip()) == key
    with pytest.raises(CommandError, match="not a date"):
        call_command("createapikey", "bad", "--expires", "2027-02-30", stdout=out, stderr=err)
