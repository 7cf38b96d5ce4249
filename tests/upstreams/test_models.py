"""Upstream routing and URL rules, client keys: the model layer, no server needed."""
from __future__ import annotations

import pytest

from upstreams.models import ClientKey, Upstream, rank

pytestmark = pytest.mark.django_db

BASES = [
    pytest.param("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1", id="no-path-means-v1"),
    pytest.param("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1", id="slash-means-v1"),
    pytest.param("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1", id="v1-kept"),
    pytest.param("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1", id="trailing-slash-dropped"),
    pytest.param("https://api.example.com/api/openai/v1", "https://api.example.com/api/openai/v1", id="other-path"),
]


@pytest.mark.parametrize(("base_url", "api_base"), BASES)
def test_upstream_base_url_normalizes_to_the_api_base(base_url: str, api_base: str) -> None:
    upstream = Upstream(name="u", base_url=base_url)
    assert upstream.api_base == api_base
    assert upstream.url("chat/completions") == f"{api_base}/chat/completions"


def names(model: str) -> list[str]:
    return [u.name for u in rank(Upstream.objects.filter(enabled=True), model)]


def test_routing_matches_globs_and_prefers_priority() -> None:
    Upstream.objects.create(name="ds-low", base_url="http://a", models="deepseek-*", priority=1)
    Upstream.objects.create(name="ds-high", base_url="http://b", models="deepseek-chat, deepseek-r*", priority=5)
    Upstream.objects.create(name="qwen", base_url="http://c", models="qwen*\nllama3")
    assert names("deepseek-chat") == ["ds-high", "ds-low"]
    assert names("deepseek-v3") == ["ds-low"]
    assert names("llama3") == ["qwen"]
    assert names("gpt-4o") == []


def test_routing_puts_catch_alls_after_specific_upstreams() -> None:
    Upstream.objects.create(name="anything", base_url="http://a", models="", priority=100)
    Upstream.objects.create(name="qwen", base_url="http://b", models="qwen*")
    assert names("qwen3") == ["qwen", "anything"]
    assert names("other") == ["anything"]


def test_routing_skips_disabled_upstreams() -> None:
    Upstream.objects.create(name="off", base_url="http://a", enabled=False)
    assert names("m") == []


def test_routing_serves_aliases_and_rewrites_them() -> None:
    upstream = Upstream.objects.create(name="ds", base_url="http://a", models="deepseek-*",
                                       model_map="coder = deepseek-chat\nbad line")
    assert names("coder") == ["ds"]
    assert upstream.upstream_model("coder") == "deepseek-chat"
    assert upstream.upstream_model("deepseek-v3") == "deepseek-v3"


def test_client_keys_are_stored_hashed_and_found_by_secret() -> None:
    key, secret = ClientKey.objects.create_key("alice")
    assert secret.startswith("sk-cgw-") and len(secret) > 40
    stored = ClientKey.objects.get(pk=key.pk)
    assert secret not in (stored.hashed, stored.prefix) and secret.startswith(stored.prefix)
    assert ClientKey.objects.for_secret(secret) == key
    assert ClientKey.objects.for_secret(secret[:-1] + "x") is None
    ClientKey.objects.filter(pk=key.pk).update(active=False)
    assert ClientKey.objects.for_secret(secret) is None
