"""The in-memory routing copy (upstreams/routing.py): read once per TTL, yet edits and new keys apply.

In-process tests drive ``Routing`` on an event loop against the real test database
(``bulk_create`` and ``update`` send no signals: they stand for another process's
writes). The end-to-end ones run a gateway with the production setting.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.test import override_settings

from tests import waiting
from tests.servers import Gateway, MockUpstream, check_admin_edit_reaches
from upstreams.models import ClientKey, Upstream
from upstreams.routing import Routing

pytestmark = pytest.mark.django_db(transaction=True)
CHAT = {"model": "fresh-model", "messages": [{"role": "user", "content": "hi"}]}


def names(upstreams: list[Upstream]) -> list[str]:
    return sorted(u.name for u in upstreams)


def another_process_adds(name: str) -> None:
    Upstream.objects.bulk_create([Upstream(name=name, base_url="http://127.0.0.1:9")])


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_the_upstreams_are_read_once_per_ttl() -> None:
    routing = Routing()
    Upstream.objects.create(name="a", base_url="http://127.0.0.1:9")

    async def scenario() -> None:
        _, first = await routing.context("")
        await asyncio.to_thread(another_process_adds, "b")
        _, second = await routing.context("")
        assert second is first and names(second) == ["a"]  # the copy, not a read
        assert routing.snapshot is not None
        routing.snapshot.loaded_at -= 30  # the TTL has passed
        _, third = await routing.context("")
        assert names(third) == ["a", "b"]

    asyncio.run(scenario())


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_concurrent_requests_share_one_read() -> None:
    routing = Routing()
    Upstream.objects.create(name="a", base_url="http://127.0.0.1:9")

    async def scenario() -> list[list[Upstream]]:
        return [upstreams for _, upstreams in await asyncio.gather(*(routing.context("") for _ in range(20)))]

    lists = asyncio.run(scenario())
    assert all(upstreams is lists[0] for upstreams in lists)


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_an_edit_saved_in_this_process_applies_at_once() -> None:
    from upstreams.routing import ROUTING

    upstream = Upstream.objects.create(name="a", base_url="http://127.0.0.1:9")

    async def upstreams() -> list[Upstream]:
        return (await ROUTING.context(""))[1]

    assert names(asyncio.run(upstreams())) == ["a"]
    upstream.enabled = False
    upstream.save()  # post_save: the process-wide copy is dropped
    assert asyncio.run(upstreams()) == []
    Upstream.objects.create(name="b", base_url="http://127.0.0.1:9")
    assert names(asyncio.run(upstreams())) == ["b"]
    Upstream.objects.get(name="b").delete()
    assert asyncio.run(upstreams()) == []


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_keys_are_looked_up_when_unseen_and_kept_until_the_ttl() -> None:
    routing = Routing()
    key, secret = ClientKey.objects.create_key("alice")

    async def key_of(secret: str) -> ClientKey | None:
        return (await routing.context(secret))[0]

    async def many(secret: str) -> list[ClientKey | None]:
        return await asyncio.gather(*(key_of(secret) for _ in range(10)))

    assert asyncio.run(key_of("sk-cgw-not-a-key")) is None
    seen = asyncio.run(many(secret))  # unseen: looked up at once, in one read for all ten
    assert seen[0] == key and all(k is seen[0] for k in seen)
    ClientKey.objects.filter(pk=key.pk).update(active=False)  # revoked by another process
    assert asyncio.run(key_of(secret)) == key  # still the copy, for the TTL at most
    assert routing.snapshot is not None
    routing.snapshot.loaded_at -= 30
    assert asyncio.run(key_of(secret)) is None  # the keys seen are read again with the upstreams
    assert routing.snapshot.keys == {}


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_a_bad_key_is_looked_up_once_per_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client retrying a bad key (or a guesser repeating one) costs one query per copy, not one per request."""
    from upstreams import routing as module

    looked_up: list[str] = []
    real = module._load_key
    monkeypatch.setattr(module, "_load_key", lambda secret: looked_up.append(secret) or real(secret))
    routing = Routing()

    async def key_of(secret: str) -> ClientKey | None:
        return (await routing.context(secret))[0]

    assert [asyncio.run(key_of("sk-cgw-bad-key")) for _ in range(5)] == [None] * 5
    assert looked_up == ["sk-cgw-bad-key"]
    assert routing.snapshot is not None
    routing.snapshot.loaded_at -= 60  # the next copy asks again: a key created meanwhile would work
    assert asyncio.run(key_of("sk-cgw-bad-key")) is None and len(looked_up) == 2


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_fresh_upstreams_reads_again_only_when_nothing_newer_is_at_hand() -> None:
    routing = Routing()

    async def scenario() -> None:
        _, old = await routing.context("")
        assert old == []
        await asyncio.to_thread(another_process_adds, "b")
        fresh = await routing.fresh_upstreams(old)
        assert fresh is not None and names(fresh) == ["b"]
        assert await routing.fresh_upstreams(old) is fresh  # already newer: no read

    asyncio.run(scenario())


@override_settings(GATEWAY_ROUTING_TTL=0)
def test_a_zero_ttl_reads_on_every_request() -> None:
    routing = Routing()

    async def scenario() -> None:
        _, first = await routing.context("")
        await asyncio.to_thread(another_process_adds, "b")
        _, second = await routing.context("")
        assert names(second) == ["b"] and first == []
        assert await routing.fresh_upstreams(second) is None
        assert routing.snapshot is None

    asyncio.run(scenario())


# --- end to end: a gateway with a TTL, edited from this (another) process ----------------------------


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Return ``check()`` once truthy; edits from another process land within the TTL."""
    return waiting.until(check, "the edit to apply", timeout, interval=0.1)


def test_with_a_ttl_new_keys_and_upstreams_serve_at_once_and_edits_within_the_ttl(
        start_gateway: Callable[..., Gateway], scripted: MockUpstream) -> None:
    gateway = start_gateway(GATEWAY_ROUTING_TTL="1")
    _, secret = ClientKey.objects.create_key("alice")
    headers = {"authorization": f"Bearer {secret}"}
    scripted.script({"chunks": [{"text": "fresh"}, {"finish": "stop"}]})

    def post() -> httpx.Response:
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)

    assert post().status_code == 404  # the key was new to the gateway: it worked at once
    upstream = Upstream.objects.create(name="new", base_url="http://127.0.0.1:9/v1", models="fresh-*")
    assert post().status_code == 502  # a model nobody served: the upstreams were read again at once

    upstream.base_url = scripted.base_url
    upstream.save()
    answer = eventually(lambda: (r := post()).status_code == 200 and r)
    assert answer.json()["choices"][0]["message"]["content"] == "fresh"

    ClientKey.objects.filter(hashed__isnull=False).update(active=False)
    eventually(lambda: post().status_code == 401)


def test_an_admin_edit_applies_at_once_in_its_process_whatever_the_ttl(
        start_gateway: Callable[..., Gateway], scripted: MockUpstream) -> None:
    gateway = start_gateway(GATEWAY_ROUTING_TTL="3600")
    _, secret = ClientKey.objects.create_key("alice")
    check_admin_edit_reaches(edited=gateway, asked=gateway, secret=secret, scripted=scripted)


@override_settings(GATEWAY_ROUTING_TTL=30)
def test_a_revoked_key_is_refused_and_named_from_the_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy keeps which revoked key a secret was, so naming it on each refused row costs no query."""
    from upstreams import routing as module

    _, secret = ClientKey.objects.create_key("mallory", active=False)
    looked_up: list[str] = []
    real = module._load_key
    monkeypatch.setattr(module, "_load_key", lambda s: looked_up.append(s) or real(s))
    routing = Routing()

    async def refused() -> tuple[ClientKey | None, ClientKey | None]:
        return (await routing.context(secret))[0], await routing.revoked_key(secret)

    for _ in range(3):
        key, revoked = asyncio.run(refused())
        assert key is None and revoked is not None and revoked.name == "mallory"
    assert looked_up == [secret]
    assert asyncio.run(routing.revoked_key("sk-cgw-nobody")) is None
