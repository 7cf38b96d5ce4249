"""The Conversations API through a real gateway, and responses that read and extend a conversation."""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from state.models import StoredResponse
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, Upstream


def answer(text: str) -> dict[str, Any]:
    return {"chunks": [{"text": text}, {"finish": "stop"}]}


def call(gateway: Gateway, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}{path}", json=body, timeout=30,
                         headers={"authorization": f"Bearer {key}"})


def text_of(item: dict[str, Any]) -> str:
    return str(item["content"][0]["text"])


def test_a_conversation_is_created_read_updated_and_deleted(gateway: Gateway, active_key: str) -> None:
    created = call(gateway, active_key, "POST", "/v1/conversations",
                   {"metadata": {"topic": "geography"}, "items": [{"role": "user", "content": "Hi"}]})
    assert created.status_code == 200
    conversation = created.json()
    assert conversation["id"].startswith("conv_") and conversation["object"] == "conversation"
    assert conversation["metadata"] == {"topic": "geography"} and isinstance(conversation["created_at"], int)
    path = f"/v1/conversations/{conversation['id']}"
    assert call(gateway, active_key, "GET", path).json() == conversation
    updated = call(gateway, active_key, "POST", path, {"metadata": {"topic": "rivers"}}).json()
    assert updated == {**conversation, "metadata": {"topic": "rivers"}}
    assert call(gateway, active_key, "DELETE", path).json() == {"id": conversation["id"],
                                                               "object": "conversation.deleted", "deleted": True}
    assert call(gateway, active_key, "GET", path).status_code == 404


def test_items_are_listed_newest_first_added_read_and_deleted(gateway: Gateway, active_key: str) -> None:
    conversation = call(gateway, active_key, "POST", "/v1/conversations",
                        {"items": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]}).json()
    path = f"/v1/conversations/{conversation['id']}/items"
    added = call(gateway, active_key, "POST", path, {"items": [{"role": "user", "content": "three"}]}).json()
    assert added["object"] == "list" and [text_of(item) for item in added["data"]] == ["three"]
    listed = call(gateway, active_key, "GET", path).json()
    assert [text_of(item) for item in listed["data"]] == ["three", "two", "one"] and listed["has_more"] is False
    first_page = call(gateway, active_key, "GET", f"{path}?order=asc&limit=2").json()
    assert [text_of(item) for item in first_page["data"]] == ["one", "two"] and first_page["has_more"] is True
    item_id = added["data"][0]["id"]
    assert text_of(call(gateway, active_key, "GET", f"{path}/{item_id}").json()) == "three"
    assert call(gateway, active_key, "DELETE", f"{path}/{item_id}").json()["id"] == conversation["id"]
    assert [text_of(item) for item in call(gateway, active_key, "GET", path).json()["data"]] == ["two", "one"]
    assert call(gateway, active_key, "GET", f"{path}/{item_id}").status_code == 404


def test_a_response_in_a_conversation_sees_its_items_and_adds_its_turn(gateway: Gateway, scripted: MockUpstream,
                                                                      chat_upstream: Upstream,
                                                                      active_key: str) -> None:
    scripted.script(answer("Paris."), answer("Lyon."))
    conversation = call(gateway, active_key, "POST", "/v1/conversations",
                        {"items": [{"role": "developer", "content": "Answer in one word."}]}).json()
    first = call(gateway, active_key, "POST", "/v1/responses",
                 {"model": "m", "input": "Capital of France?", "conversation": conversation["id"]}).json()
    assert first["output"][0]["content"][0]["text"] == "Paris."
    call(gateway, active_key, "POST", "/v1/responses",
         {"model": "m", "input": "Second city?", "conversation": {"id": conversation["id"]}})
    assert scripted.requests()[-1]["body"]["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Second city?"},
    ]
    listed = call(gateway, active_key, "GET", f"/v1/conversations/{conversation['id']}/items?order=asc").json()
    assert [text_of(item) for item in listed["data"]] == ["Answer in one word.", "Capital of France?", "Paris.",
                                                          "Second city?", "Lyon."]
    assert StoredResponse.objects.get(pk=first["id"]).to_dict()["conversation"] == {"id": conversation["id"]}


def test_store_false_still_adds_the_turn_to_the_conversation(gateway: Gateway, scripted: MockUpstream,
                                                            chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("ok"))
    conversation = call(gateway, active_key, "POST", "/v1/conversations", {}).json()
    call(gateway, active_key, "POST", "/v1/responses",
         {"model": "m", "input": "hi", "store": False, "conversation": conversation["id"]})
    listed = call(gateway, active_key, "GET", f"/v1/conversations/{conversation['id']}/items?order=asc").json()
    assert [text_of(item) for item in listed["data"]] == ["hi", "ok"]
    assert StoredResponse.objects.count() == 0


def test_a_conversation_and_a_previous_response_together_are_refused(gateway: Gateway, scripted: MockUpstream,
                                                                    chat_upstream: Upstream,
                                                                    active_key: str) -> None:
    response = call(gateway, active_key, "POST", "/v1/responses", {
        "model": "m", "input": "hi", "conversation": "conv_x", "previous_response_id": "resp_x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "mutually_exclusive_parameters"
    assert scripted.requests() == []


def test_another_keys_conversation_is_not_found(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                               active_key: str) -> None:
    _, other = ClientKey.objects.create_key("bob")
    conversation = call(gateway, other, "POST", "/v1/conversations", {}).json()
    assert call(gateway, active_key, "GET", f"/v1/conversations/{conversation['id']}").status_code == 404
    response = call(gateway, active_key, "POST", "/v1/responses",
                    {"model": "m", "input": "hi", "conversation": conversation["id"]})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "conversation_not_found")
    assert scripted.requests() == []


@pytest.mark.parametrize(("body", "param"), [
    pytest.param({"metadata": {"k": 1}}, "metadata", id="metadata-values-are-strings"),
    pytest.param({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata", id="at-most-16-pairs"),
    pytest.param({"items": [{"role": "user", "content": "x"}] * 21}, "items", id="at-most-20-items"),
    pytest.param({"items": "hello"}, "items", id="items-are-an-array"),
    pytest.param({"items": [{"type": "item_reference", "id": "msg_1"}]}, "items", id="no-references"),
])
def test_a_bad_conversation_is_a_400_naming_the_field(gateway: Gateway, active_key: str, body: dict[str, Any],
                                                      param: str) -> None:
    response = call(gateway, active_key, "POST", "/v1/conversations", body)
    assert (response.status_code, response.json()["error"]["param"]) == (400, param)


def test_a_method_an_endpoint_does_not_take_is_a_405(gateway: Gateway, active_key: str) -> None:
    response = call(gateway, active_key, "GET", "/v1/conversations")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_response_in_a_conversation_says_so_in_its_stream(gateway: Gateway, scripted: MockUpstream,
                                                           chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("ok"))
    conversation = call(gateway, active_key, "POST", "/v1/conversations", {}).json()
    response = httpx.post(f"{gateway.url}/v1/responses", timeout=30, headers={"authorization": f"Bearer {active_key}"},
                          json={"model": "m", "input": "hi", "stream": True, "conversation": conversation["id"]})
    created, completed = (json.loads(line[5:]) for line in response.text.splitlines()
                          if line.startswith("data:") and ('"response.created"' in line
                                                           or '"response.completed"' in line))
    assert created["response"]["conversation"] == completed["response"]["conversation"] == {"id": conversation["id"]}
