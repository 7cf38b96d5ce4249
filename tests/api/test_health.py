"""Probes and the model list."""
from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def test_healthz_and_readyz_answer_ok(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_readyz_answers_503_when_the_database_is_unreachable(start_gateway, transactional_db: None) -> None:
    server = start_gateway(DATABASE_URL="postgres://nobody@127.0.0.1:9/none")
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_models_lists_named_models_of_enabled_upstreams(gateway: Gateway, active_key: str) -> None:
    Upstream.objects.create(name="a", base_url="http://a", models="qwen3 deepseek-*", model_map="coder=qwen3")
    Upstream.objects.create(name="b", base_url="http://b", models="hidden", enabled=False)
    response = httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {active_key}"})
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["qwen3", "coder"]
    assert wait_for_log(response.headers["x-request-id"]).endpoint == "models"
    assert httpx.get(f"{gateway.url}/v1/models").status_code == 401


def test_readyz_reports_an_unreachable_redis_while_the_api_keeps_serving(start_gateway, scripted,
                                                                         chat_upstream: Upstream,
                                                                         active_key: str) -> None:
    server = start_gateway(REDIS_URL="redis://127.0.0.1:1/0", GATEWAY_RATE_LIMIT="100/m")
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error")
    scripted.script({"chunks": [{"text": "still here"}, {"finish": "stop"}]})
    answer = httpx.post(f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {active_key}"},
                        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.json()["choices"][0]["message"]["content"] == "still here"
    assert "rate limit not enforced" in server.log()


def test_models_lists_what_a_catch_all_upstream_reports_with_its_window_asked_once_a_minute(
        start_gateway: Callable[..., Gateway], active_key: str, scripted: MockUpstream,
        chat_upstream: Upstream) -> None:
    gateway = start_gateway()
    before = scripted.listings()

    def listed() -> list[dict[str, object]]:
        return httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {active_key}"}).json()["data"]

    first, second = listed(), listed()
    assert first == second == [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "chat-mock",
                                "context_window": 32768}]
    assert scripted.listings() - before == 1  # the second listing came from the process's copy
