"""Each upstream is judged on the cool-down of the endpoint it would be sent to (issue 10).

``choose_upstreams`` once looked every candidate up under the FIRST candidate's endpoint:
with a Responses-speaking upstream ranked first, a Chat-only upstream cooling down on
chat/completions was tried as if healthy. In process here (the real ``choose_upstreams``,
the real cool-down on the test cache), then end to end against a gateway and the mock.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.conf import settings

from api.pipeline.plan import Route, choose_upstreams
from plumbing import sharedstate
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams import cooldown
from upstreams.models import Upstream


@pytest.fixture
def clean_cache() -> Iterator[None]:
    """The cool-downs live in the process's cache (local memory in tests): none before, none left after."""
    sharedstate.cache().clear()
    yield
    sharedstate.cache().clear()


@pytest.fixture
def mixed_upstreams(transactional_db: None, clean_cache: None) -> dict[str, Upstream]:
    """A Responses-speaking upstream ranked first, then two Chat-only ones, all serving every model."""
    return {
        "responses": Upstream.objects.create(name="speaks-responses", base_url="http://127.0.0.1:9",
                                             api="responses", priority=30),
        "chat-high": Upstream.objects.create(name="chat-high", base_url="http://127.0.0.1:9/v1", priority=20),
        "chat-low": Upstream.objects.create(name="chat-low", base_url="http://127.0.0.1:9/v1", priority=10),
    }


def fail(upstream: Upstream, endpoint: str, times: int) -> None:
    """Record ``times`` failures of ``upstream`` on ``endpoint``, as ``connect`` does after each one."""

    async def record() -> None:
        for _ in range(times):
            await cooldown.record_failure(upstream, endpoint)

    asyncio.run(record())


def routes_for(api: str, model: str = "any-model") -> list[Route]:
    """Return ``choose_upstreams``'s answer for a request to ``api``, from the enabled upstreams."""
    request: Any = SimpleNamespace(exchange=SimpleNamespace(model=""),
                                   upstreams=list(Upstream.objects.filter(enabled=True)))
    routes = asyncio.run(choose_upstreams(request, model, api))
    assert request.exchange.model == model
    return routes


def summary(routes: list[Route]) -> list[tuple[str, str, bool]]:
    return [(route.upstream.name, route.dialect.endpoint, route.failing) for route in routes]


def test_it_tries_a_chat_upstream_cooling_down_on_chat_completions_last_even_behind_a_responses_one(
        mixed_upstreams: dict[str, Upstream]) -> None:
    """The regression of issue 10: chat-high cools down on the endpoint a bridged request would use.

    chat-low had one failure (below the threshold): it is tried, marked failing so that
    a success clears the count. chat-high's count was cleared when its cool-down began.
    """
    fail(mixed_upstreams["chat-high"], "chat/completions", settings.GATEWAY_COOLDOWN_AFTER)
    fail(mixed_upstreams["chat-low"], "chat/completions", 1)
    assert summary(routes_for("responses")) == [
        ("speaks-responses", "responses", False),
        ("chat-low", "chat/completions", True),
        ("chat-high", "chat/completions", False),
    ]


def test_it_judges_a_responses_upstream_on_responses_not_on_its_chat_endpoint(
        mixed_upstreams: dict[str, Upstream]) -> None:
    """A cool-down of the Responses upstream's chat/completions does not hold back its /responses."""
    fail(mixed_upstreams["responses"], "chat/completions", settings.GATEWAY_COOLDOWN_AFTER)
    fail(mixed_upstreams["chat-high"], "responses", settings.GATEWAY_COOLDOWN_AFTER)  # never sent there
    assert summary(routes_for("responses")) == [
        ("speaks-responses", "responses", False),
        ("chat-high", "chat/completions", False),
        ("chat-low", "chat/completions", False),
    ]


def test_it_judges_every_upstream_of_a_chat_request_on_chat_completions(
        mixed_upstreams: dict[str, Upstream]) -> None:
    """For a Chat client every upstream is sent chat/completions, the Responses-speaking one too."""
    fail(mixed_upstreams["responses"], "chat/completions", settings.GATEWAY_COOLDOWN_AFTER)
    fail(mixed_upstreams["chat-high"], "responses", settings.GATEWAY_COOLDOWN_AFTER)
    assert summary(routes_for("chat/completions")) == [
        ("chat-high", "chat/completions", False),
        ("chat-low", "chat/completions", False),
        ("speaks-responses", "chat/completions", False),
    ]


# --- end to end: a real gateway, its own cool-down state ------------------------------------------------

CHAT = {"model": "chat-only-model", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "codex-model", "input": "hi"}
BUSY = {"status": 500, "body": {"error": {"message": "busy", "type": "server_error"}}}


def test_it_bridges_past_a_chat_upstream_cooling_down_on_chat_completions_in_a_real_gateway(
        start_gateway: Callable[..., Gateway], scripted: MockUpstream, active_key: str) -> None:
    """After chat-high's chat/completions failed, a Responses request that fails over skips it for chat-low."""
    gateway = start_gateway(GATEWAY_COOLDOWN_AFTER="1")
    Upstream.objects.create(name="speaks-responses", base_url=scripted.url, api="responses",
                            models="codex-*", api_key="sk-responses")
    Upstream.objects.create(name="chat-high", base_url=scripted.base_url, priority=20, api_key="sk-chat-high")
    Upstream.objects.create(name="chat-low", base_url=scripted.base_url, priority=10, api_key="sk-chat-low")
    headers = {"authorization": f"Bearer {active_key}"}

    def sent_to() -> list[tuple[str, str]]:
        return [(r["path"], r["headers"]["authorization"]) for r in scripted.requests()]

    scripted.script(BUSY, {"chunks": [{"text": "from chat-low"}, {"finish": "stop"}]})
    chat = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert chat.status_code == 200
    assert sent_to() == [("/v1/chat/completions", "Bearer sk-chat-high"),
                         ("/v1/chat/completions", "Bearer sk-chat-low")]

    scripted.script(BUSY, {"chunks": [{"text": "bridged"}, {"finish": "stop"}]})
    answer = httpx.post(f"{gateway.url}/v1/responses", json=RESPONSES, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["output"][0]["content"][0]["text"] == "bridged"
    assert sent_to() == [("/v1/responses", "Bearer sk-responses"), ("/v1/chat/completions", "Bearer sk-chat-low")]
    row = wait_for_log(answer.headers["x-request-id"])
    assert (row.upstream_name, row.mode) == ("chat-low", "bridge")
