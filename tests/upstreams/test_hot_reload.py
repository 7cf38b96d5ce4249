"""Admin edits take effect on the very next request of a running server, without a restart."""
from __future__ import annotations

import httpx

from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CHAT = {"model": "fresh-model", "messages": [{"role": "user", "content": "hi"}]}


def test_an_upstream_added_or_edited_is_used_by_the_next_request(gateway: Gateway, scripted: MockUpstream,
                                                                 active_key: str) -> None:
    headers = {"authorization": f"Bearer {active_key}"}
    scripted.script({"chunks": [{"text": "fresh"}, {"finish": "stop"}]})
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 404

    upstream = Upstream.objects.create(name="new", base_url="http://127.0.0.1:9/v1", models="fresh-*")
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 502

    upstream.base_url = scripted.base_url
    upstream.save()
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "fresh"

    upstream.enabled = False
    upstream.save()
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 404
