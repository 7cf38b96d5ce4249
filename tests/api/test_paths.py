"""Paths without ``/v1`` (issue 13): served as their ``/v1`` twins; a path nothing serves gets a JSON 404."""
from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def test_a_client_configured_without_v1_is_served_like_one_with_it(
        gateway: Gateway, active_key: str, scripted: MockUpstream, chat_upstream: Upstream) -> None:
    scripted.script({"chunks": [{"text": "hi"}, {"finish": "stop"}]})
    client = openai.OpenAI(base_url=gateway.url, api_key=active_key, max_retries=0)  # no /v1
    answer = client.responses.create(model="mock-model", input="hello")
    chat = client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hello"}])
    stored = client.responses.retrieve(answer.id)
    models = client.models.list()
    assert answer.output_text == "hi" and chat.choices[0].message.content == "hi"
    assert stored.id == answer.id and models.object == "list"
    rows = wait_for_logs(4)
    assert [row.endpoint for row in rows] == ["responses", "chat/completions", "responses/{id}", "models"]
    assert all(row.status == 200 for row in rows)


@pytest.mark.parametrize("path", ["/v1/nope", "/v2/responses", "/api/v1/responses", "/v1"])
def test_a_path_nothing_serves_gets_a_json_404_naming_the_paths_that_exist(gateway: Gateway, path: str) -> None:
    answer = httpx.post(f"{gateway.url}{path}", json={"model": "m"})
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "unknown_url" and error["type"] == "invalid_request_error"
    assert path in error["message"]
    for served in ("/v1/responses", "/v1/responses/{response_id}", "/v1/chat/completions", "/v1/models",
                   "/v1/conversations"):
        assert served in error["message"]


def test_the_pages_are_still_djangos(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/admin/").status_code == 302  # to the login page
    assert httpx.get(f"{gateway.url}/logs").status_code == 301  # APPEND_SLASH, not a 404
    assert httpx.get(f"{gateway.url}/healthz").json()["status"] == "ok"
