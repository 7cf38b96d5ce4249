"""What a client that sends a bad request gets: an OpenAI-shaped error, and one audit row."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from logs.models import RequestLog
from tests.conftest import wait_for_log
from tests.servers import Gateway
from upstreams.models import Upstream

CHAT_URL, RESPONSES_URL = "/v1/chat/completions", "/v1/responses"

BAD_BODIES = [
    pytest.param(CHAT_URL, b"{not json", None, "invalid_json", id="chat-not-json"),
    pytest.param(CHAT_URL, b"[1, 2]", None, None, id="chat-not-an-object"),
    pytest.param(CHAT_URL, b'{"messages": []}', "model", "missing_required_parameter", id="chat-no-model"),
    pytest.param(CHAT_URL, b'{"model": 7, "messages": []}', "model", "invalid_type", id="chat-model-not-string"),
    pytest.param(CHAT_URL, b'{"model": "m"}', "messages", "missing_required_parameter", id="chat-no-messages"),
    pytest.param(CHAT_URL, b'{"model": "m", "messages": "hi"}', "messages", "invalid_type", id="chat-messages-str"),
    pytest.param(CHAT_URL, b'{"model": "m", "messages": [1]}', "messages[0]", "invalid_type", id="chat-message-int"),
    pytest.param(CHAT_URL, b'{"model": "m", "messages": [], "stream": "yes"}', "stream", "invalid_type",
                 id="chat-stream-not-bool"),
    pytest.param(RESPONSES_URL, b"", None, "invalid_json", id="responses-empty-body"),
    pytest.param(RESPONSES_URL, b'"hello"', None, None, id="responses-not-an-object"),
    pytest.param(RESPONSES_URL, b'{"input": "hi"}', "model", "missing_required_parameter", id="responses-no-model"),
    pytest.param(RESPONSES_URL, b'{"model": ""}', "model", "invalid_type", id="responses-empty-model"),
    pytest.param(RESPONSES_URL, b'{"model": "m"}', "input", "missing_required_parameter", id="responses-no-input"),
    pytest.param(RESPONSES_URL, b'{"model": "m", "input": 3}', "input", "invalid_type", id="responses-input-int"),
]


@pytest.mark.parametrize(("path", "body", "param", "code"), BAD_BODIES)
def test_it_rejects_bad_bodies_with_400_naming_the_param(gateway: Gateway, active_key: str, path: str, body: bytes,
                                                         param: str | None, code: str | None) -> None:
    response = httpx.post(f"{gateway.url}{path}", content=body,
                          headers={"authorization": f"Bearer {active_key}", "content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.status, row.key_name) == ("rejected", 400, "alice")


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer sk-cgw-unknown-key", "Basic abc"])
def test_it_answers_401_without_a_valid_client_key(gateway: Gateway, transactional_db: None,
                                                   authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = httpx.post(f"{gateway.url}{CHAT_URL}", json={"model": "m", "messages": []}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "sk-cgw-unknown-key" not in response.text
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.status, row.client_key) == ("rejected", 401, None)


def test_it_answers_401_to_a_revoked_key(gateway: Gateway, revoked_key: str) -> None:
    response = httpx.post(f"{gateway.url}{RESPONSES_URL}", json={"model": "m", "input": "hi"},
                          headers={"authorization": f"Bearer {revoked_key}"})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    row = wait_for_log(response.headers["x-request-id"])  # who is still using a revoked key
    assert (row.outcome, row.status, row.key_name, row.client_key.name) == ("rejected", 401, "mallory", "mallory")


def test_it_answers_404_when_no_upstream_serves_the_model(gateway: Gateway, active_key: str) -> None:
    Upstream.objects.create(name="deepseek", base_url="http://127.0.0.1:9/v1", models="deepseek-*")
    response = httpx.post(f"{gateway.url}{CHAT_URL}", json={"model": "qwen3", "messages": []},
                          headers={"authorization": f"Bearer {active_key}"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "The model 'qwen3' is not served by any enabled upstream.", "type": "invalid_request_error",
        "param": "model", "code": "model_not_found"}
    assert wait_for_log(response.headers["x-request-id"]).outcome == "rejected"


def test_it_echoes_the_clients_request_id(gateway: Gateway, active_key: str) -> None:
    response = httpx.post(f"{gateway.url}{CHAT_URL}", content=b"nope",
                          headers={"authorization": f"Bearer {active_key}", "x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert wait_for_log("trace-42").status == 400


def test_it_answers_413_to_a_body_over_the_limit(start_gateway, active_key: str) -> None:
    server = start_gateway(GATEWAY_MAX_BODY_BYTES="1k")
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 4096}]}
    response = httpx.post(f"{server.url}{CHAT_URL}", json=big, headers={"authorization": f"Bearer {active_key}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert wait_for_log(response.headers["x-request-id"]).outcome == "rejected"


def test_it_lets_anonymous_requests_in_only_when_configured(start_gateway, transactional_db: None) -> None:
    server = start_gateway(GATEWAY_ALLOW_ANONYMOUS="true")
    response = httpx.post(f"{server.url}{CHAT_URL}", json={"model": "nothing-serves-this", "messages": []})
    assert response.status_code == 404  # past authentication, stopped at routing
    assert "GATEWAY_ALLOW_ANONYMOUS is on" in server.log()
    assert wait_for_log(response.headers["x-request-id"]).client_key is None


def test_a_reused_request_id_still_leaves_one_row_per_request(gateway: Gateway, active_key: str) -> None:
    headers = {"authorization": f"Bearer {active_key}", "x-request-id": "trace-dup"}
    for _ in range(2):
        httpx.post(f"{gateway.url}{CHAT_URL}", content=b"nope", headers=headers)
    gateway.settle()
    ids = sorted(RequestLog.objects.values_list("request_id", flat=True))
    assert len(ids) == 2 and ids[0] == "trace-dup" and ids[1].startswith("trace-dup~")



def test_a_query_string_that_is_not_utf8_gets_a_json_400() -> None:
    """daphne refuses such a request itself; another ASGI server may hand it over (in process here)."""
    from api.http.app import ApiApp

    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0) if messages else await asyncio.Event().wait()  # type: ignore[func-returns-value]

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/models", "raw_path": b"/v1/models",
             "query_string": b"q=\xff\xfe", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(ApiApp(lambda *args: None)(scope, receive, send))  # type: ignore[arg-type]
    start, body = sent
    assert start["status"] == 400 and (b"x-content-type-options", b"nosniff") in start["headers"]
    assert json.loads(body["body"])["error"]["type"] == "invalid_request_error"
