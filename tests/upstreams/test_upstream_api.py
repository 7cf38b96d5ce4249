"""The upstream's protocol as a choice (chat, responses, anthropic): the migration keeps what each spoke."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from upstreams.bootstrap import sync_env_upstream
from upstreams.models import Upstream

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("upstreams", "0010_responses_tool_repair")]


def migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    MigrationExecutor(connection).migrate(targets)
    return MigrationExecutor(connection)


def test_the_switch_becomes_the_api_each_upstream_spoke_and_back() -> None:
    try:
        old = migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("upstreams", "Upstream")
        old.objects.create(name="openai", base_url="https://api.openai.com/v1", supports_responses=True)
        old.objects.create(name="llama", base_url="http://127.0.0.1:8080/v1", supports_responses=False)
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        assert dict(Upstream.objects.values_list("name", "api")) == {"openai": "responses", "llama": "chat"}
        assert {u.name: u.protocol for u in Upstream.objects.all()} == {"openai": "responses", "llama": "chat"}
        back = migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("upstreams", "Upstream")
        assert dict(back.objects.values_list("name", "supports_responses")) == {"openai": True, "llama": False}
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.parametrize(("base", "url"), [
    ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
    ("https://api.deepseek.com/anthropic", "https://api.deepseek.com/anthropic/v1/messages"),
    ("http://127.0.0.1:9000/v1/", "http://127.0.0.1:9000/v1/messages"),
])
def test_an_anthropic_base_url_means_its_v1_with_or_without_it(base: str, url: str) -> None:
    upstream = Upstream(name="claude", base_url=base, api="anthropic")
    assert (upstream.url("messages"), upstream.protocol) == (url, "anthropic")


@override_settings(UPSTREAM_BASE_URL="https://api.anthropic.com", UPSTREAM_API="anthropic", UPSTREAM_API_KEY="k")
def test_the_bootstrap_upstream_takes_its_api_from_the_environment() -> None:
    upstream = sync_env_upstream()
    assert upstream is not None and (upstream.api, upstream.url("messages")) == (
        "anthropic", "https://api.anthropic.com/v1/messages")
